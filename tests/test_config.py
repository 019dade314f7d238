"""Settings: defaults, HOMEO_* variables, CLI overrides, and one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from homeo.config import EXAMPLE_AGENTS_DIR, Settings, SettingsError, example_of, load_settings


@pytest.fixture(autouse=True)
def no_homeo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variables a test sets count, not the caller's."""
    for name in list(os.environ):
        if name.startswith("HOMEO_"):
            monkeypatch.delenv(name)


def error_of(**overrides: object) -> str:
    with pytest.raises(SettingsError) as raised:
        load_settings(**overrides)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8080, 2)
    assert settings.data_dir == Path("homeo-data")
    assert settings.agents_dir == EXAMPLE_AGENTS_DIR
    assert settings.resolved_database_url() == "sqlite:///homeo-data/homeo.db"
    assert (settings.log_level, settings.log_json) == ("info", True)


def test_settings_come_from_homeo_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOMEO_PORT", "9000")
    monkeypatch.setenv("HOMEO_WORKERS", "0")
    monkeypatch.setenv("HOMEO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOMEO_AGENTS_DIR", str(tmp_path))
    monkeypatch.setenv("HOMEO_POLL_SECONDS", "0.5")
    monkeypatch.setenv("HOMEO_LOG_JSON", "false")
    monkeypatch.setenv("HOMEO_LOG_LEVEL", "debug")
    settings = load_settings()
    assert (settings.port, settings.workers, settings.poll_seconds) == (9000, 0, 0.5)
    assert (settings.data_dir, settings.agents_dir) == (tmp_path / "data", tmp_path)
    assert (settings.log_json, settings.log_level) == (False, "debug")
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'data' / 'homeo.db'}"


def test_an_explicit_database_url_wins_over_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_DATABASE_URL", "postgresql://postgres@db:5432/homeo")
    assert load_settings().resolved_database_url() == "postgresql://postgres@db:5432/homeo"
    assert load_settings(database_url="sqlite:///elsewhere.db").resolved_database_url() == (
        "sqlite:///elsewhere.db")


def test_overrides_win_over_variables_and_none_means_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOMEO_PORT", "9000")
    monkeypatch.setenv("HOMEO_HOST", "0.0.0.0")
    settings = load_settings(port=9100, host=None, workers=None)
    assert (settings.port, settings.host, settings.workers) == (9100, "0.0.0.0", 2)


def test_a_bad_variable_is_one_line_naming_it_and_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOMEO_PORT", "abc")
    assert error_of() == ("invalid setting HOMEO_PORT='abc': Input should be a valid integer,"
                          " unable to parse string as an integer (e.g. HOMEO_PORT=8080)")


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("HOMEO_PORT", "70000", "Input should be less than or equal to 65535"),
        ("HOMEO_LOG_LEVEL", "loud", "Input should be 'debug', 'info', 'warning' or 'error'"),
        ("HOMEO_LOG_JSON", "maybe", "Input should be a valid boolean"),
        ("HOMEO_MAX_REQUEST_BYTES", "10", "Input should be greater than or equal to 1024"),
        ("HOMEO_DEFAULT_TENANT", "a b", "String should match pattern"),
        ("HOMEO_DATABASE_URL", "mysql://db",
         "Value error, must start with sqlite:///, postgresql:// or postgres://"),
        ("HOMEO_AGENTS_DIR", "/no/such/folder", "Value error, /no/such/folder is not a directory"),
        ("HOMEO_OTLP_ENDPOINT", "collector:4318",
         "Value error, must be an http:// or https:// URL, or empty"),
        ("HOMEO_KEY_RATE_LIMIT", "10/day",
         "Value error, rate limit '10/day' must look like N/second, N/minute or N/hour"),
        ("HOMEO_OPENAI_BASE_URL", "api.openai.com/v1",
         "Value error, must be an http:// or https:// URL with a host"),
        ("HOMEO_SANDBOX_TIMEOUT", "10 parsecs",
         "Value error, '10 parsecs' is not a duration such as 5s, 500ms or 2m"),
        ("HOMEO_TENANT_TOKENS_PER_DAY", "lots", "Input should be a valid integer"),
    ],
)
def test_each_bad_variable_names_itself(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(name, value)
    assert error_of().startswith(f"invalid setting {name}={value!r}: {problem}")


def test_a_bad_override_is_named_as_its_variable() -> None:
    assert error_of(port=0) == (
        "invalid setting HOMEO_PORT=0: Input should be greater than or equal to 1"
        " (e.g. HOMEO_PORT=8080)")


def test_several_bad_settings_are_all_named_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_WORKERS", "-1")
    assert error_of(port=0) == (
        "invalid setting HOMEO_PORT=0: Input should be greater than or equal to 1"
        " (e.g. HOMEO_PORT=8080); "
        "invalid setting HOMEO_WORKERS='-1': Input should be greater than or equal to 0"
        " (e.g. HOMEO_WORKERS=2)")


def test_an_unknown_override_is_refused() -> None:
    assert error_of(colour="red") == (
        "invalid setting HOMEO_COLOUR='red': Extra inputs are not permitted")


def test_settings_built_directly_validate_too(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, workers=0)
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'homeo.db'}"
    with pytest.raises(ValueError, match="poll_seconds"):
        Settings(poll_seconds=0)


def test_unknown_homeo_variables_are_reported_with_a_suggestion() -> None:
    from homeo.config import unknown_settings

    warnings = unknown_settings(
        {"HOMEO_PROT": "9000", "HOMEO_PORT": "1", "HOMEO_TEST_POSTGRES_URL": "x", "PATH": "/bin",
         "HOMEO_ZZZ": "1"}
    )
    assert warnings == [
        "ignoring unknown setting HOMEO_PROT (did you mean HOMEO_PORT?)",
        "ignoring unknown setting HOMEO_ZZZ",
    ]


@pytest.mark.parametrize(
    ("name", "value", "problem", "example"),
    [
        ("HOMEO_MODELS", "{bad",
         "not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)",
         "HOMEO_MODELS='{\"default\": [{\"model\": \"local\"}], \"embedding\":"
         " [{\"model\": \"minilm\"}]}'"),
        ("HOMEO_PRICES", '{"gpt": {"input_per_million": 1,}}',
         "not valid JSON (Expecting property name enclosed in double quotes at line 1 column 33)",
         "HOMEO_PRICES='{\"openai:gpt-4o-mini\": {\"input_per_million\": 0.15,"),
        ("HOMEO_MCP_SERVERS", "[", "not valid JSON (Expecting value at line 1 column 2)",
         "HOMEO_MCP_SERVERS='{\"files\": {\"command\":"),
        ("HOMEO_TOOL_POLICY", "deny everything",
         "not valid JSON (Expecting value at line 1 column 1)",
         "HOMEO_TOOL_POLICY='{\"*\": {\"deny\": [\"http_get\"]}}'"),
    ],
)
def test_malformed_json_is_one_line_naming_the_setting_and_a_valid_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, problem: str, example: str
) -> None:
    monkeypatch.setenv(name, value)
    message = error_of()
    assert message.startswith(f"invalid setting {name}: {problem} (e.g. {example}")


def test_a_bad_url_inside_a_json_setting_says_where(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_MODELS",
                       '{"default": [{"model": "openai:x", "base_url": "localhost:8000"}]}')
    assert error_of().startswith(
        "invalid setting HOMEO_MODELS: Value error, must be an http:// or https:// URL with a"
        " host (at default.0.base_url='localhost:8000') (e.g. HOMEO_MODELS=")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_example_shown_in_an_error_is_a_valid_value(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    example = example_of(name)
    if example is None:  # free text: any value is valid, so no error shows an example
        assert Settings.model_fields[name].annotation is str, (
            f"HOMEO_{name.upper()} has no valid value to show in its errors; add one to"
            " homeo.config._EXAMPLES")
        return
    monkeypatch.setenv(f"HOMEO_{name.upper()}", example)
    assert name in load_settings().model_fields_set  # read from the variable, and valid


def test_jwt_sign_in_needs_an_issuer_an_audience_and_a_long_secret(tmp_path) -> None:
    from homeo.config import SettingsError, load_settings

    with pytest.raises(SettingsError, match="^invalid settings: JWT sign-in needs"
                       " HOMEO_JWT_ISSUER and HOMEO_JWT_AUDIENCE"):
        load_settings(data_dir=tmp_path, jwt_secret="s" * 40)
    with pytest.raises(SettingsError, match="HOMEO_JWT_SECRET must be at least 32 bytes"):
        load_settings(data_dir=tmp_path, jwt_secret="short", jwt_issuer="i", jwt_audience="a")
    with pytest.raises(SettingsError, match="HOMEO_JWT_ALGORITHMS='HS256,none': Value error,"
                       " none: list some of HS256"):
        load_settings(data_dir=tmp_path, jwt_algorithms="HS256,none")
    with pytest.raises(SettingsError, match="is neither an http\\(s\\) URL nor a file"):
        load_settings(data_dir=tmp_path, jwt_jwks=str(tmp_path / "missing.json"))
    made = load_settings(data_dir=tmp_path, jwt_secret="s" * 40, jwt_issuer="i",
                         jwt_audience="a", jwt_algorithms=" HS256 , EdDSA ")
    assert made.jwt_enabled() and made.jwt_algorithms == "HS256,EdDSA"


def test_secret_settings_are_read_from_files_and_held_as_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = {
        "HOMEO_DATABASE_URL_FILE": "postgresql://homeo:pw-from-file@db:5432/homeo\n",
        "HOMEO_JWT_SECRET_FILE": "jwt-secret-from-a-file-" + "x" * 16 + "\n",
        "HOMEO_OPENAI_API_KEY_FILE": "sk-from-a-file\n",
        "HOMEO_METRICS_TOKEN_FILE": "metrics-token\n",
    }
    for variable, text in files.items():
        (tmp_path / variable).write_text(text)
        monkeypatch.setenv(variable, str(tmp_path / variable))
    monkeypatch.setenv("HOMEO_JWT_ISSUER", "https://login.example.com/")
    monkeypatch.setenv("HOMEO_JWT_AUDIENCE", "homeo")
    settings = load_settings()
    assert settings.database_url == "postgresql://homeo:pw-from-file@db:5432/homeo"
    assert settings.jwt_secret.get_secret_value() == "jwt-secret-from-a-file-" + "x" * 16
    assert settings.openai_api_key.get_secret_value() == "sk-from-a-file"
    assert settings.metrics_token.get_secret_value() == "metrics-token"
    assert "sk-from-a-file" not in repr(settings) and "metrics-token" not in repr(settings)


def test_a_secret_file_that_is_missing_or_doubled_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOMEO_OPENAI_API_KEY_FILE", str(tmp_path / "nowhere"))
    assert error_of() == (f"cannot read HOMEO_OPENAI_API_KEY_FILE={tmp_path / 'nowhere'}:"
                          " No such file or directory")
    (tmp_path / "key").write_text("sk-1")
    monkeypatch.setenv("HOMEO_OPENAI_API_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("HOMEO_OPENAI_API_KEY", "sk-2")
    assert error_of() == "both HOMEO_OPENAI_API_KEY and HOMEO_OPENAI_API_KEY_FILE are set; keep one"


def test_an_error_in_a_secret_setting_never_shows_the_secret(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMEO_DATABASE_URL", "mysql://homeo:hunter2-pw@db/homeo")
    message = error_of()
    assert "hunter2-pw" not in message
    assert message.startswith(
        "invalid setting HOMEO_DATABASE_URL='mysql://homeo:<PASSWORD>@db/homeo'")
    monkeypatch.delenv("HOMEO_DATABASE_URL")
    monkeypatch.setenv("HOMEO_MODELS", '{"x": [{"model": "openai:m", "api_key": ["sk-abc"]}]}')
    message = error_of()
    assert "sk-abc" not in message and "(at x.0.api_key)" in message
