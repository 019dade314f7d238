"""Built-in tools: `python`, `shell`, `http_get` and `calculator`.

`python` and `shell` go through `homeo.sandbox.run()`, the same path as
`homeo sandbox run`, with the operator's limits (HOMEO_SANDBOX_*).
`http_get` reaches only the hosts and ports in HOMEO_HTTP_ALLOWLIST (none by
default; see homeo.tools.allowlist). Those settings reach the tools in their
`ToolContext`.
Agents list them as `homeo.tools.builtin:NAME`.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import threading
from collections.abc import Sequence
from typing import Annotated, Any

import httpx
from pydantic import Field

from homeo.sandbox import SandboxResult, run
from homeo.sandbox.bwrap import python_executable
from homeo.tools.allowlist import Allowlist
from homeo.tools.arithmetic import ARITHMETIC, evaluate
from homeo.tools.context import ToolContext, ToolSettings
from homeo.tools.registry import ToolError, tool

# The sandbox's own wall-clock limit (HOMEO_SANDBOX_TIMEOUT) ends a run; this
# is only the engine's outer bound.
TOOL_TIMEOUT_SECONDS = 600.0


# What a step stores is the tool's result, so the files it returns are capped:
# at most this many, and HOMEO_SANDBOX_OUTPUT_BYTES of names and contents.
TOOL_MAX_FILES = 100


async def _sandboxed(
    command: Sequence[str], files: dict[str, str] | None, settings: ToolSettings
) -> dict[str, Any]:
    """Run `command` in the sandbox on a thread. If the call is cancelled (the
    run was cancelled, or the worker is stopping), the sandboxed process tree
    is killed and cleaned up before the cancellation goes on."""
    budget = settings.files_budget
    cancel = threading.Event()
    work = asyncio.ensure_future(asyncio.to_thread(
        run, command, settings.sandbox, files=files,
        allow_without=settings.sandbox_allow_without,
        max_files=TOOL_MAX_FILES, files_budget=budget, cancel=cancel))
    try:
        result = await asyncio.shield(work)
    except asyncio.CancelledError:
        cancel.set()
        with contextlib.suppress(Exception):
            await work
        raise
    settings.sandbox_tally.record(result)
    return _report(result, budget)


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return f"<{len(data)} bytes of binary data>"


def _report(result: SandboxResult, files_budget: int) -> dict[str, Any]:
    """What the model sees (and the step stores): output, status, limits hit,
    and the files written, with a note of those left out."""
    report: dict[str, Any] = {
        "exit_code": result.exit_code,
        "stdout": result.stdout.decode(errors="replace"),
        "stderr": result.stderr.decode(errors="replace"),
        "timed_out": result.timed_out,
        "out_of_memory": result.oom_killed,
        "output_truncated": result.stdout_truncated or result.stderr_truncated,
        "files": {name: _text(data) for name, data in result.files.items()},
    }
    if result.files_omitted:
        report["files_omitted"] = (
            f"{result.files_omitted} more files ({result.files_omitted_bytes} bytes of names"
            f" and contents) were left out: the tool returns at most {TOOL_MAX_FILES} files"
            f" and {files_budget} bytes of names and contents, smallest first; write fewer"
            " files, or print what matters"
        )
    return report


@tool(timeout_seconds=TOOL_TIMEOUT_SECONDS)
async def python(
    code: str, context: ToolContext, files: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run Python code (standard library only) in a sandbox with no network.

    The working directory /scratch is writable; files written there are returned.

    Args:
        code: the Python program to run; print what you want to see
        files: text files to put in /scratch first, by relative path
    """
    return await _sandboxed([python_executable(), "-I", "-c", code], files, context.settings)


@tool(timeout_seconds=TOOL_TIMEOUT_SECONDS)
async def shell(
    command: str, context: ToolContext, files: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a shell command (POSIX sh) in a sandbox with no network.

    The working directory /scratch is writable; files written there are returned.

    Args:
        command: the command line to run
        files: text files to put in /scratch first, by relative path
    """
    return await _sandboxed(["/bin/sh", "-c", command], files, context.settings)


@tool(idempotent=True, timeout_seconds=5)
def calculator(expression: Annotated[str, Field(pattern=ARITHMETIC)]) -> int | float:
    """Evaluate an arithmetic expression with + - * / // % ** and parentheses.

    Args:
        expression: the arithmetic to do, for example "(2 + 3) * 4"
    """
    return evaluate(expression)  # the AST evaluator: no names, calls or attributes


MAX_REDIRECTS = 5
DECODE_CHUNK = 65536

# The charsets a page may name: the web's text encodings (the WHATWG Encoding
# Standard's, by Python's codec name). Python's codec registry also holds
# zlib_codec and bz2_codec (a few hundred bytes expand to gigabytes) and
# punycode (quadratic time), so a charset outside this set is read as UTF-8.
TEXT_ENCODINGS = frozenset({
    "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "ascii",
    *(f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)),
    *(f"cp{n}" for n in (866, 874, 1250, 1251, 1252, 1253, 1254, 1255, 1256, 1257, 1258)),
    "koi8-r", "koi8-u", "mac-roman", "mac-cyrillic", "tis-620",
    "gb2312", "gbk", "gb18030", "big5", "big5hkscs",
    "euc_jp", "iso2022_jp", "shift_jis", "cp932", "euc_kr", "cp949",
})


def _check_url(url: httpx.URL, allowed: Allowlist) -> None:
    if url.scheme not in ("http", "https"):
        raise ToolError(f"http_get fetches only http:// and https:// URLs, not {str(url)!r}")
    if not allowed.allows(url.scheme, url.host, url.port):
        where = url.host if url.port is None else f"{url.host}:{url.port}"
        raise ToolError(
            f"http_get may not reach {where!r}: it is not in the operator's allowlist"
            f" (HOMEO_HTTP_ALLOWLIST allows: {allowed}; an entry without a port allows"
            " only 80 for http and 443 for https)"
        )


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]), True
    return bytes(body), False


@tool(idempotent=True, timeout_seconds=300)
async def http_get(url: str, context: ToolContext) -> dict[str, Any]:
    """Fetch a web page or API response with HTTP GET.

    Only hosts and ports the operator allows can be reached, and redirects only
    to such places; the body is cut at a size limit (see `truncated`).

    Args:
        url: the http:// or https:// address to fetch
    """
    allowed = context.settings.http_allowlist
    if not allowed:
        raise ToolError(
            "http_get is turned off: the operator has allowed no hosts (HOMEO_HTTP_ALLOWLIST)"
        )
    limit = context.settings.http_max_bytes
    seconds = context.settings.http_timeout_seconds
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
                    # Decoding is CPU work on up to `limit` bytes: off the event loop.
                    text, cut = await asyncio.to_thread(
                        _decode, body, response.charset_encoding, limit
                    )
                    return {
                        "url": str(target),
                        "status": response.status_code,
                        "content_type": response.headers.get("content-type", ""),
                        "text": text,
                        "truncated": truncated or cut,
                    }
    except TimeoutError:
        raise ToolError(f"http_get: {str(target)!r} took longer than {seconds:g}s") from None
    except httpx.HTTPError as error:
        raise ToolError(f"http_get: {str(target)!r} failed: {error}") from None
    raise ToolError(f"http_get: more than {MAX_REDIRECTS} redirects from {url!r}")


def text_encoding(charset: str | None) -> str:
    """The codec to read a body with: the charset named, if it is a text encoding."""
    try:
        name = codecs.lookup(charset or "utf-8").name
    except LookupError:
        return "utf-8"
    return name if name in TEXT_ENCODINGS else "utf-8"


def _decode(body: bytes, charset: str | None, max_chars: int) -> tuple[str, bool]:
    """The body as text, at most `max_chars` characters (and whether it was cut)."""
    decoder = codecs.getincrementaldecoder(text_encoding(charset))()
    parts: list[str] = []
    room = max_chars
    try:
        for start in range(0, len(body), DECODE_CHUNK):
            # Not final: a body cut at the cap may end inside a character.
            text = decoder.decode(body[start:start + DECODE_CHUNK], final=False)
            if len(text) > room:
                parts.append(text[:room])
                return "".join(parts), True
            parts.append(text)
            room -= len(text)
    except UnicodeDecodeError:
        return f"<{len(body)} bytes of binary data>", False
    return "".join(parts), False
