"""The key file: made 0600 and never overwritten, refused when others can
read it, inside the data dir, or not a key file; replaced whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeo.config import Settings, SettingsError, load_settings
from homeo.crypto import keyfile
from homeo.crypto.errors import KeyFileError, KeyUnavailable
from homeo.doctor import check_encryption_key


def test_a_new_key_file_is_private_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "encryption.keys"
    ring = keyfile.new_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = keyfile.load(path)
    assert loaded.current == ring.current and list(loaded.keys) == [ring.current]
    with pytest.raises(FileExistsError):
        keyfile.new_key_file(path)


def test_a_saved_ring_keeps_every_kek_until_dropped(tmp_path: Path) -> None:
    path = tmp_path / "encryption.keys"
    first = keyfile.new_key_file(path)
    rotated = first.with_new_current()
    keyfile.save(path, rotated)
    loaded = keyfile.load(path)
    assert loaded.current == rotated.current and set(loaded.keys) == {first.current,
                                                                      rotated.current}
    assert path.stat().st_mode & 0o777 == 0o600
    keyfile.save(path, loaded.without({first.current}))
    with pytest.raises(KeyUnavailable, match=first.current):
        keyfile.load(path).get(first.current)
    assert [p.name for p in tmp_path.iterdir()] == ["encryption.keys"]  # no temporary left


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "encryption.keys"
    keyfile.new_key_file(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        keyfile.load(path)
    with pytest.raises(SettingsError, match="chmod 600"):
        load_settings(data_dir=tmp_path / "data", encryption_key_file=path)


def test_missing_and_foreign_files_are_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="homeo crypto keygen"):
        keyfile.load(tmp_path / "nothing")
    other = tmp_path / "other"
    other.write_text('{"format": "something else"}')
    other.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a homeo encryption key file"):
        keyfile.load(other)


def test_a_key_file_inside_the_data_dir_is_refused(tmp_path: Path) -> None:
    inside = tmp_path / "data" / "encryption.keys"
    keyfile.new_key_file(inside)
    with pytest.raises(SettingsError, match="inside the data dir"):
        load_settings(data_dir=tmp_path / "data", encryption_key_file=inside)
    outside = tmp_path / "elsewhere.keys"
    keyfile.new_key_file(outside)
    assert Settings(data_dir=tmp_path / "data",
                    encryption_key_file=outside).encryption_key_file == outside


def test_doctor_reports_the_key_file(tmp_path: Path) -> None:
    assert check_encryption_key(None).status == "info"
    path = tmp_path / "encryption.keys"
    missing = check_encryption_key(path)
    assert missing.status == "missing" and "homeo crypto keygen" in missing.fix
    ring = keyfile.new_key_file(path)
    found = check_encryption_key(path)
    assert found.status == "ok" and ring.current in found.detail and "retired" not in found.detail
    keyfile.save(path, ring.with_new_current())
    assert "1 retired, a rotation to finish" in check_encryption_key(path).detail
