"""Real documentation, as an agent's tools return it, for measuring the
injection classifier's false positives on text it never learned from: the
long descriptions (READMEs) of the Python distributions installed beside
homeo, full of imperatives ("run", "never", "ignore", "override") that are not
attacks. Never used for training; what it holds depends on what is installed.

A piece is 6 to 20 consecutive non-empty lines, at most MAX_WORDS words (the
size of a tool output the classifier reads in one window).
"""

from __future__ import annotations

import random

MAX_WORDS = 110
MIN_LINES, MAX_LINES = 6, 20


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


def package_readmes(limit: int = 600, seed: int = 0) -> list[str]:
    """Pieces of the installed distributions' READMEs: at most `limit`, a
    seeded sample."""
    from importlib.metadata import distributions

    rng = random.Random(f"package_readmes:{seed}")
    found = []
    seen = set()
    for dist in sorted(distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        body = dist.metadata.get_payload() or dist.metadata["Description"] or ""
        if name in seen or not isinstance(body, str) or len(body) < 500:
            continue
        seen.add(name)
        found += ["\n".join(piece) for piece in _cut(body, rng)]
    return rng.sample(found, min(limit, len(found)))
