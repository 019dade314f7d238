"""Encryption at rest: what it costs, each figure beside a baseline measured
in the same run.

- a checkpoint write (`begin_step` + `complete_step` with a ~4 KB state, the
  way the worker writes every step) for a tenant marked sensitive against a
  plain tenant in the same database, on SQLite and PostgreSQL;
- wrapping and unwrapping a data key with the hybrid X25519+ML-KEM-768 KEM
  against X25519 and ML-KEM-768 alone;
- sealing one value with a cached data key against AES-256-GCM alone.

    .venv/bin/python bench/crypto.py
    .venv/bin/python bench/crypto.py --steps 500 --rounds 3 --backends sqlite
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from _common import POSTGRES_URL, machine, postgres_problem, postgres_schema, table
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from homeo.backends import open_backends  # noqa: E402
from homeo.crypto import envelope, kem, keyfile  # noqa: E402
from homeo.crypto.tenants import open_cipher  # noqa: E402
from homeo.store.models import NewRun  # noqa: E402

STATE = {"messages": [{"role": "user", "content": "word " * 150}] * 5, "step": 0}  # ~4 KB


def per_call_us(call: Callable[[], Any], calls: int, rounds: int) -> float:
    """Median over `rounds` of the mean microseconds per call."""
    results = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(calls):
            call()
        results.append((time.perf_counter() - began) / calls * 1e6)
    return statistics.median(results)


def step_writer(store: Any, tenant: str) -> Callable[[], None]:
    """Each call writes the next step of one long run, as the worker does."""
    run, _ = store.create_run(NewRun(tenant_id=tenant, agent="bench", input="bench"))
    claimed = store.claim_run(tenant, run.id)
    seq = [0]
    previous: list[Any] = [None]

    def write() -> None:
        n = seq[0]
        checkpoint = {"seq": n + 1, "state": {**STATE, "step": n}}
        store.begin_step(tenant, run.id, n, "llm", "think", {"n": n}, fence=claimed.lease_epoch)
        store.complete_step(tenant, run.id, n, {"answer": n}, checkpoint,
                            fence=claimed.lease_epoch, previous=previous[0])
        previous[0], seq[0] = checkpoint, n + 1

    return write


def checkpoint_rows(name: str, url: str, key_file: Path, steps: int,
                    rounds: int) -> list[list[str]]:
    backends = open_backends(url)
    try:
        cipher = open_cipher(key_file, backends.store)
        assert cipher is not None
        cipher.set_sensitive("sensitive", True)
        plain = per_call_us(step_writer(backends.store, "plain"), steps, rounds)
        sealed = per_call_us(step_writer(backends.store, "sensitive"), steps, rounds)
    finally:
        backends.close()
    return [[f"checkpoint write, {name}", f"{plain:.0f}", f"{sealed:.0f}",
             f"{sealed - plain:+.0f} ({sealed / plain:.2f}x)"]]


def kem_rows(calls: int, rounds: int) -> list[list[str]]:
    x_priv, x_peer = X25519PrivateKey.generate(), X25519PrivateKey.generate().public_key()
    m_priv = MLKEM768PrivateKey.generate()
    m_pub = m_priv.public_key()
    _, m_ct = m_pub.encapsulate()
    alone_enc = per_call_us(lambda: (X25519PrivateKey.generate().exchange(x_peer),
                                     m_pub.encapsulate()), calls, rounds)
    alone_dec = per_call_us(lambda: (x_priv.exchange(x_peer), m_priv.decapsulate(m_ct)),
                            calls, rounds)
    kek = kem.HybridPrivateKey.generate()
    public, data_key = kek.public_key(), envelope.new_data_key()
    wrapped = envelope.wrap(public, "kek", "t", "dk", data_key)
    wrap = per_call_us(lambda: envelope.wrap(public, "kek", "t", "dk", data_key), calls, rounds)
    unwrap = per_call_us(lambda: envelope.unwrap(kek, "kek", "t", "dk", wrapped), calls, rounds)
    return [["wrap a data key", f"{alone_enc:.0f}", f"{wrap:.0f}", f"{1e6 / wrap:,.0f}/s"],
            ["unwrap a data key", f"{alone_dec:.0f}", f"{unwrap:.0f}", f"{1e6 / unwrap:,.0f}/s"]]


def seal_rows(folder: Path, key_file: Path, calls: int, rounds: int) -> list[list[str]]:
    backends = open_backends(f"sqlite:///{folder / 'seal.db'}")
    try:
        cipher = open_cipher(key_file, backends.store)
        assert cipher is not None
        key_id = cipher.set_sensitive("t", True).data_key_id
        assert key_id is not None
        value = b"x" * 4096
        raw_key = AESGCM(AESGCM.generate_key(bit_length=256))
        alone = per_call_us(lambda: raw_key.encrypt(b"\0" * 12, value, b"t"), calls, rounds)
        sealed = per_call_us(lambda: cipher.seal("t", key_id, "runs.checkpoint", value),
                             calls, rounds)
    finally:
        backends.close()
    return [["seal 4 KB, cached data key", f"{alone:.1f}", f"{sealed:.1f}",
             f"{1e6 / sealed:,.0f}/s"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="checkpoint writes per round")
    parser.add_argument("--calls", type=int, default=300, help="KEM calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is shown")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    args = parser.parse_args()
    print(machine())
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        key_file = folder / "bench.keys"
        keyfile.new_key_file(key_file)
        for name in args.backends.split(","):
            if name == "sqlite":
                rows += checkpoint_rows("SQLite", f"sqlite:///{folder / 'homeo.db'}", key_file,
                                        args.steps, args.rounds)
            elif name == "postgres":
                problem = postgres_problem(args.postgres_url)
                if problem:
                    print(f"PostgreSQL skipped: {problem}")
                    continue
                with postgres_schema(args.postgres_url) if not problem else nullcontext() as url:
                    rows += checkpoint_rows("PostgreSQL", url, key_file, args.steps,
                                            args.rounds)
        print(table(["per step", "plain tenant µs", "sensitive tenant µs", "difference"], rows))
        crypto = kem_rows(args.calls, args.rounds) + seal_rows(folder, key_file, args.calls * 10,
                                                               args.rounds)
    print(table(["per call", "baseline µs", "homeo µs", "homeo rate"], crypto))
    print("baselines: X25519 exchange + ML-KEM-768 alone (wrap/unwrap: homeo adds HKDF and"
          " AES-GCM); AES-256-GCM alone (seal: homeo adds the nonce, the associated data and"
          " the cache look-up)")


if __name__ == "__main__":
    main()
