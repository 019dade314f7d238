"""Opening backends: the store and queue a URL names, and clear errors when
one cannot be used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from homeo.backends import BackendUnavailable, open_backends


def test_a_queue_url_puts_the_queue_on_redis_beside_the_store(tmp_path: Path,
                                                               redis_url: str) -> None:
    backends = open_backends(f"sqlite:///{tmp_path / 'homeo.db'}", None, redis_url)
    try:
        assert backends.shared is None
        job, _ = backends.queue.enqueue("acme", "run", {})
        assert type(backends.queue.storage).__name__ == "RedisQueueStorage"
        assert backends.queue.get("acme", job.id).status == "queued"
    finally:
        backends.close()


def test_a_queue_url_that_is_not_redis_says_what_to_use(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="unknown queue URL 'postgresql://x': use"
                                                 r" redis://HOST:PORT/DB \(or rediss://\)"):
        open_backends(f"sqlite:///{tmp_path / 'homeo.db'}", None, "postgresql://x")


def test_without_the_redis_extra_the_error_names_it(tmp_path: Path) -> None:
    # A real interpreter in which `import redis` fails, as without the extra.
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from homeo.backends import BackendUnavailable, open_backends\n"
        "try:\n"
        f"    open_backends('sqlite:///{tmp_path / 'homeo.db'}', None, 'redis://127.0.0.1/0')\n"
        "except BackendUnavailable as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == ("Redis support is not installed (redis missing):"
                                   " pip install 'homeo[redis]'"), done.stderr


def test_a_redis_that_accepts_but_never_answers_fails_instead_of_hanging(
    tmp_path: Path,
) -> None:
    import socket

    from homeo.queue.redis import connect

    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"redis://127.0.0.1:{port}/0"
        assert connect(url)[0].connection_pool.connection_kwargs["socket_timeout"] == 10.0
        with pytest.raises(BackendUnavailable, match=r"does not answer \(Timeout"):
            open_backends(f"sqlite:///{tmp_path / 'homeo.db'}", None,
                          f"{url}?socket_timeout=0.2")
