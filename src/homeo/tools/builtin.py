"""Built-in tools: `python`, `shell`, `http_get` and `calculator`.

`python` and `shell` go through `homeo.sandbox.run()`, the same path as
`homeo sandbox run`, with the operator's limits (HOMEO_SANDBOX_*).
`http_get` reaches only the hosts in HOMEO_HTTP_ALLOWLIST (none by default).
Agents list them as `homeo.tools.builtin:NAME`.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Sequence
from typing import Annotated, Any

import httpx
from pydantic import Field

from homeo.config import load_settings
from homeo.tools.arithmetic import ARITHMETIC, evaluate
from homeo.sandbox import SandboxResult, run
from homeo.sandbox.bwrap import python_executable
from homeo.sandbox.layers import parse_allow_without
from homeo.sandbox.limits import limits_from_settings, parse_duration, parse_size
from homeo.tools.registry import ToolError, tool

# The sandbox's own wall-clock limit (HOMEO_SANDBOX_TIMEOUT) ends a run; this
# is only the engine's outer bound.
TOOL_TIMEOUT_SECONDS = 600.0


def _sandboxed(command: Sequence[str], files: dict[str, str] | None) -> dict[str, Any]:
    settings = load_settings()
    result = run(command, limits_from_settings(settings), files=files,
                 allow_without=parse_allow_without(settings.sandbox_allow_without))
    return _report(result)


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return f"<{len(data)} bytes of binary data>"


def _report(result: SandboxResult) -> dict[str, Any]:
    """What the model sees: output, status, limits hit, and the files written."""
    return {
        "exit_code": result.exit_code,
        "stdout": result.stdout.decode(errors="replace"),
        "stderr": result.stderr.decode(errors="replace"),
        "timed_out": result.timed_out,
        "out_of_memory": result.oom_killed,
        "output_truncated": result.stdout_truncated or result.stderr_truncated,
        "files": {name: _text(data) for name, data in result.files.items()},
    }


@tool(timeout_seconds=TOOL_TIMEOUT_SECONDS)
def python(code: str, files: dict[str, str] | None = None) -> dict[str, Any]:
    """Run Python code (standard library only) in a sandbox with no network.

    The working directory /scratch is writable; files written there are returned.

    Args:
        code: the Python program to run; print what you want to see
        files: text files to put in /scratch first, by relative path
    """
    return _sandboxed([python_executable(), "-I", "-c", code], files)


@tool(timeout_seconds=TOOL_TIMEOUT_SECONDS)
def shell(command: str, files: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a shell command (POSIX sh) in a sandbox with no network.

    The working directory /scratch is writable; files written there are returned.

    Args:
        command: the command line to run
        files: text files to put in /scratch first, by relative path
    """
    return _sandboxed(["/bin/sh", "-c", command], files)


@tool(idempotent=True, timeout_seconds=5)
def calculator(expression: Annotated[str, Field(pattern=ARITHMETIC)]) -> int | float:
    """Evaluate an arithmetic expression with + - * / // % ** and parentheses.

    Args:
        expression: the arithmetic to do, for example "(2 + 3) * 4"
    """
    return evaluate(expression)  # the AST evaluator: no names, calls or attributes


MAX_REDIRECTS = 5


def _allowed_hosts(allowlist: str) -> set[str]:
    return {host.strip().strip("[]").lower() for host in allowlist.split(",") if host.strip()}


def _check_url(url: httpx.URL, allowed: set[str]) -> None:
    if url.scheme not in ("http", "https"):
        raise ToolError(f"http_get fetches only http:// and https:// URLs, not {str(url)!r}")
    if url.host.lower() not in allowed:
        raise ToolError(
            f"http_get may not reach host {url.host!r}: it is not in the operator's allowlist"
            f" (HOMEO_HTTP_ALLOWLIST allows: {', '.join(sorted(allowed))})"
        )


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]), True
    return bytes(body), False


@tool(idempotent=True, timeout_seconds=300)
async def http_get(url: str) -> dict[str, Any]:
    """Fetch a web page or API response with HTTP GET.

    Only hosts the operator allows can be reached, and redirects only to such
    hosts; the body is cut at a size limit (see `truncated`).

    Args:
        url: the http:// or https:// address to fetch
    """
    settings = load_settings()
    allowed = _allowed_hosts(settings.http_allowlist)
    if not allowed:
        raise ToolError(
            "http_get is turned off: the operator has allowed no hosts (HOMEO_HTTP_ALLOWLIST)"
        )
    limit = parse_size(settings.http_max_bytes)
    seconds = parse_duration(settings.http_timeout)
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ToolError(f"http_get: {url!r} is not a valid URL: {error}") from None
    try:
        async with asyncio.timeout(seconds), httpx.AsyncClient(
            timeout=seconds, follow_redirects=False, trust_env=False
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                _check_url(target, allowed)
                # identity: a compressed body could expand far past the cap in one chunk.
                async with client.stream(
                    "GET", target, headers={"accept-encoding": "identity"}
                ) as response:
                    if response.is_redirect:
                        # Each hop is checked against the allowlist before it is fetched.
                        target = target.join(response.headers["location"])
                        continue
                    body, truncated = await _read_capped(response, limit)
                    return {
                        "url": str(target),
                        "status": response.status_code,
                        "content_type": response.headers.get("content-type", ""),
                        "text": _decode(body, response.encoding or "utf-8"),
                        "truncated": truncated,
                    }
    except TimeoutError:
        raise ToolError(f"http_get: {str(target)!r} took longer than {seconds:g}s") from None
    except httpx.HTTPError as error:
        raise ToolError(f"http_get: {str(target)!r} failed: {error}") from None
    raise ToolError(f"http_get: more than {MAX_REDIRECTS} redirects from {url!r}")


def _decode(body: bytes, encoding: str) -> str:
    try:
        # Not final: a body cut at the cap may end inside a character.
        return codecs.getincrementaldecoder(encoding)().decode(body, final=False)
    except (UnicodeDecodeError, LookupError):
        return f"<{len(body)} bytes of binary data>"
