"""Real documentation, as an agent's tools return it: text full of imperatives
("run", "never", "ignore", "override") that are not attacks. Two sources:

- the long descriptions (READMEs) of the Python distributions installed beside
  homeo (what they hold depends on what is installed);
- the docstrings of the standard library's modules (fixed by the Python version).

Each source is cut into splits by name (a distribution, a module), with the
same index % 5 rule as the generated texts (crc32 of the name), so a test
piece comes from a README or module no part of training read.

A piece is 6 to 20 consecutive non-empty lines, at most MAX_WORDS words (the
size of a tool output the classifier reads in one window).
"""

from __future__ import annotations

import ast
import random
import sysconfig
import zlib
from pathlib import Path

from homeo.safety.agent_texts import SPLIT_OF_REMAINDER

MAX_WORDS = 110
MIN_LINES, MAX_LINES = 6, 20
# Standard-library folders that are tests, demos or vendored code rather than documentation.
_STDLIB_SKIP = {"test", "tests", "idle_test", "site-packages", "dist-packages", "lib2to3",
                "idlelib", "turtledemo", "__phello__", "ensurepip"}


def split_of(name: str) -> str:
    """The split a named source (a distribution, a module) belongs to."""
    return SPLIT_OF_REMAINDER[zlib.crc32(name.encode()) % 5]


def _cut(text: str, rng: random.Random) -> list[list[str]]:
    """Consecutive pieces of 6-20 non-empty lines, each within MAX_WORDS."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    pieces = []
    index = 0
    while index + MIN_LINES <= len(lines):
        piece: list[str] = []
        words = 0
        wanted = rng.randint(MIN_LINES, MAX_LINES)
        while index < len(lines) and len(piece) < wanted:
            count = len(lines[index].split())
            if piece and words + count > MAX_WORDS:
                break
            piece.append(lines[index])
            words += count
            index += 1
        if len(piece) >= MIN_LINES // 2 and words <= MAX_WORDS:
            pieces.append(piece)
        elif not piece:
            index += 1
    return pieces


def package_readmes(limit: int = 600, seed: int = 0, split: str | None = None) -> list[str]:
    """Pieces of the installed distributions' READMEs (of `split`'s
    distributions only, when given): at most `limit`, a seeded sample."""
    from importlib.metadata import distributions

    rng = random.Random(f"package_readmes:{seed}")
    found = []
    seen = set()
    for dist in sorted(distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        body = dist.metadata.get_payload() or dist.metadata["Description"] or ""
        # homeo's own README is kept out: tests read it as a document no part of training saw.
        if name in seen or name == "homeo" or not isinstance(body, str) or len(body) < 500:
            continue
        seen.add(name)
        if split is None or split_of(name) == split:
            found += ["\n".join(piece) for piece in _cut(body, rng)]
    return rng.sample(found, min(limit, len(found)))


def _docstrings(path: Path) -> str:
    """A module's docstrings (module, classes, functions) in source order."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return ""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                found.append(doc)
    return "\n".join(found)


def stdlib_docs(split: str, limit: int = 3000, seed: int = 0) -> list[str]:
    """Pieces of the docstrings of `split`'s standard-library modules: at most
    `limit`, a seeded sample."""
    root = Path(sysconfig.get_paths()["stdlib"])
    rng = random.Random(f"stdlib_docs:{seed}:{split}")
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if _STDLIB_SKIP.intersection(parts) or split_of("/".join(parts)) != split:
            continue
        found += ["\n".join(piece) for piece in _cut(_docstrings(path), rng)]
    return rng.sample(found, min(limit, len(found)))
