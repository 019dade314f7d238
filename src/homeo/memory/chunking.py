"""Split a document into chunks along its structure: headings, then paragraphs,
then sentences, then words, with overlap between neighbouring chunks.

A chunk is a span of the document's text (`start`, `end`), so a search hit can
say where it came from. Each chunk's `text` starts with the path of headings
it sits under ("Install > Linux"), so a chunk about "it" still carries what
"it" is; the headings themselves are not repeated inside the span.
Overlap never crosses a heading: a new section starts clean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, slots=True)
class ChunkPolicy:
    max_chars: int = 1000
    overlap_chars: int = 150

    def __post_init__(self) -> None:
        if self.max_chars < 100:
            raise ValueError(f"chunks must allow at least 100 characters, got {self.max_chars}")
        if not 0 <= self.overlap_chars <= self.max_chars // 2:
            raise ValueError(
                f"overlap must be between 0 and half the chunk size ({self.max_chars // 2}),"
                f" got {self.overlap_chars}")


@dataclass(frozen=True, slots=True)
class Chunk:
    position: int  # 0, 1, 2... in document order
    text: str  # the heading path, a blank line, then the span's text
    start: int  # the span in the document's text
    end: int


@dataclass
class _Section:
    heading: str
    spans: list[tuple[int, int]]  # paragraphs, as (start, end) in the text


def chunk(text: str, policy: ChunkPolicy = ChunkPolicy(), *, markdown: bool = True) -> list[Chunk]:
    """The chunks of `text`. With `markdown`, `#` lines are headings; otherwise
    (plain text) only blank lines separate paragraphs."""
    chunks: list[Chunk] = []
    for section in _sections(text, markdown):
        for start, end in _pack(text, _pieces(text, section.spans, policy.max_chars), policy):
            body = text[start:end]
            chunks.append(Chunk(len(chunks), f"{section.heading}\n\n{body}" if section.heading
                                else body, start, end))
    return chunks


def _sections(text: str, markdown: bool) -> list[_Section]:
    """Headed sections, each with its paragraphs; fenced code blocks stay whole."""
    path: list[tuple[int, str]] = []  # (level, title) of the headings we are under
    sections = [_Section("", [])]
    paragraph: tuple[int, int] | None = None
    fenced = False
    offset = 0
    for line in text.splitlines(keepends=True):
        start, offset = offset, offset + len(line)
        stripped = line.strip()
        heading = _HEADING.match(stripped) if markdown and not fenced else None
        if markdown and _FENCE.match(stripped):
            fenced = not fenced
        if heading or (not stripped and not fenced):
            if paragraph is not None:
                sections[-1].spans.append(paragraph)
                paragraph = None
            if heading:
                level = len(heading.group(1))
                path = [(lvl, title) for lvl, title in path if lvl < level]
                path.append((level, heading.group(2).strip()))
                sections.append(_Section(" > ".join(title for _, title in path), []))
            continue
        end = start + len(line.rstrip())
        paragraph = (start + len(line) - len(line.lstrip()), end) if paragraph is None \
            else (paragraph[0], end)
    if paragraph is not None:
        sections[-1].spans.append(paragraph)
    return [section for section in sections if section.spans]


def _pieces(text: str, spans: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """The paragraphs, each longer than `limit` cut at sentence ends, then at spaces."""
    pieces: list[tuple[int, int]] = []
    for start, end in spans:
        if end - start <= limit:
            pieces.append((start, end))
            continue
        cuts = _sentence_starts(text, start, end)
        for sentence_start, sentence_end in zip(cuts, [*cuts[1:], end], strict=True):
            pieces.extend(_words(text, sentence_start, sentence_end, limit))
    return pieces


def _sentence_starts(text: str, start: int, end: int) -> list[int]:
    """Where each sentence of [start, end) begins."""
    return [start] + [m.end() for m in _SENTENCE_END.finditer(text, start, end) if m.end() < end]


def _words(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """[start, end) cut at spaces into spans of at most `limit` (a longer word is cut)."""
    spans: list[tuple[int, int]] = []
    while end - start > limit:
        cut = text.rfind(" ", start + 1, start + limit + 1)
        cut = cut if cut > start else start + limit
        spans.append((start, len(text[start:cut].rstrip()) + start))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    stripped_end = start + len(text[start:end].rstrip())
    if stripped_end > start:
        spans.append((start, stripped_end))
    return spans


def _pack(text: str, pieces: list[tuple[int, int]], policy: ChunkPolicy) -> list[tuple[int, int]]:
    """Pieces of one section joined greedily into spans of at most `max_chars`;
    each span after the first starts up to `overlap_chars` back into the one
    before, at a word boundary."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    end = 0
    for piece_start, piece_end in pieces:
        if start is not None and piece_end - start <= policy.max_chars:
            end = piece_end
            continue
        if start is not None:
            spans.append((start, end))
        start, end = piece_start, piece_end
        if spans and policy.overlap_chars:
            start = _overlap_start(text, spans[-1], piece_start, piece_end, policy)
    if start is not None:
        spans.append((start, end))
    return spans


def _overlap_start(text: str, previous: tuple[int, int], piece_start: int, piece_end: int,
                   policy: ChunkPolicy) -> int:
    """Where a chunk that begins with the piece at `piece_start` starts when it
    carries up to `overlap_chars` of the previous chunk (never past `max_chars`)."""
    room = min(policy.overlap_chars, policy.max_chars - (piece_end - piece_start))
    if room <= 0:
        return piece_start
    earliest = max(previous[0], previous[1] - room)
    if earliest == previous[0]:
        return earliest
    boundary = text.find(" ", earliest, previous[1])
    while boundary != -1 and boundary < previous[1] and text[boundary].isspace():
        boundary += 1
    if boundary == -1 or boundary >= previous[1]:
        return piece_start
    return boundary
