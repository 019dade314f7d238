"""The text of a document, from its bytes and its format.

Formats: `text` (.txt), `markdown` (.md, .markdown), `html` (.html, .htm) and
`pdf` (.pdf, with pypdf). HTML becomes markdown-like text: h1-h6 become `#`
headings and block elements paragraphs, so the chunker sees its structure;
scripts, styles and other invisible parts are dropped.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath

FORMATS = ("text", "markdown", "html", "pdf")
SUFFIXES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
            ".html": "html", ".htm": "html", ".pdf": "pdf"}


class ExtractError(ValueError):
    """The bytes cannot be read as the format says; the message says why."""


@dataclass(frozen=True, slots=True)
class Extracted:
    text: str
    format: str  # one of FORMATS
    title: str | None  # an HTML <title> or a PDF's title, when it has one

    @property
    def markdown(self) -> bool:
        """Whether `#` lines in `text` are headings."""
        return self.format in ("markdown", "html")


def format_of(filename: str) -> str | None:
    """The format a file name's suffix says, or None when homeo does not read it."""
    return SUFFIXES.get(PurePath(filename).suffix.lower())


def extract(data: bytes, format: str) -> Extracted:
    if format == "pdf":
        return _pdf(data)
    if format not in FORMATS:
        raise ExtractError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ExtractError(f"not UTF-8 text (byte {error.start} is {data[error.start]:#04x});"
                           " save the file as UTF-8") from None
    return from_text(text, format)


def from_text(text: str, format: str) -> Extracted:
    """`text` as the format says: HTML is turned into headings and paragraphs."""
    if "\x00" in text:
        raise ExtractError("the text holds a NUL character: it looks like a binary file")
    if format == "html":
        parser = _HTMLText()
        parser.feed(text)
        parser.close()
        return Extracted(parser.text(), "html", parser.title or None)
    if format not in ("text", "markdown"):
        raise ExtractError(f"format {format!r} cannot be sent as text: use text, markdown or html")
    return Extracted(text.replace("\r\n", "\n"), format, None)


def _pdf(data: bytes) -> Extracted:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError:
        raise ExtractError("reading PDF needs pypdf: pip install 'pypdf>=5'") from None
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (PyPdfError, ValueError, KeyError, TypeError) as error:
        raise ExtractError(f"not a readable PDF: {error}") from None
    # Each page is at least one paragraph, so chunks break at page ends.
    return Extracted("\n\n".join(page for page in pages if page), "pdf", title or None)


_BLOCKS = {"p", "div", "section", "article", "li", "ul", "ol", "table", "tr", "br", "pre",
           "blockquote", "header", "footer", "main", "aside", "nav", "dd", "dt", "figure"}
_HIDDEN = {"script", "style", "noscript", "template", "head", "svg"}
_SPACES = re.compile(r"[ \t\r\f\v]+")


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0
        self.in_title = False
        self.title = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        if tag in _HIDDEN:
            self.hidden += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append(f"\n\n{'#' * int(tag[1])} ")
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data.strip()
        if not self.hidden:
            self.parts.append(_SPACES.sub(" ", data.replace("\n", " ")))

    def text(self) -> str:
        joined = "".join(self.parts)
        lines = [line.strip() for line in joined.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
