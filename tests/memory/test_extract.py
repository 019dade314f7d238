"""Text from .txt, .md, .html and .pdf files, and clear refusals."""

from __future__ import annotations

import pytest

from homeo.memory.extract import ExtractError, extract, format_of


def pdf_with_text(*pages: str) -> bytes:
    """A minimal valid PDF (one Helvetica text line per page), written by hand."""
    count = len(pages)
    objects = ["<< /Type /Catalog /Pages 2 0 R >>",
               "<< /Type /Pages /Kids [" + " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
               + f"] /Count {count} >>",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for index, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources"
                       f" << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * index} 0 R >>")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
            .encode())
    return out


def test_formats_come_from_the_suffix() -> None:
    assert [format_of(n) for n in ("a.TXT", "b.md", "c.htm", "d.pdf", "e.docx")] == [
        "text", "markdown", "html", "pdf", None]


def test_html_becomes_headings_and_paragraphs_without_scripts() -> None:
    html = ("<html><head><title>Pets</title><style>p {}</style></head><body>"
            "<h1>Cats</h1><p>Cats <b>purr</b>.</p><script>alert(1)</script>"
            "<h2>Food</h2><ul><li>fish</li><li>milk &amp; water</li></ul></body></html>")
    got = extract(html.encode(), "html")
    assert got.title == "Pets" and got.markdown
    assert got.text == "# Cats\n\nCats purr.\n\n## Food\n\nfish\n\nmilk & water\n"


def test_pdf_pages_become_paragraphs() -> None:
    got = extract(pdf_with_text("Walruses have tusks.", "Otters hold hands."), "pdf")
    assert got.format == "pdf"
    assert got.text == "Walruses have tusks.\n\nOtters hold hands."


@pytest.mark.parametrize(("data", "format", "problem"), [
    (b"\xff\xfe\x00bad", "text", "not UTF-8"),
    (b"a\x00b", "markdown", "NUL"),
    (b"not a pdf at all", "pdf", "not a readable PDF"),
    (b"x", "docx", "unknown format"),
])
def test_unreadable_input_is_refused_saying_why(data: bytes, format: str, problem: str) -> None:
    with pytest.raises(ExtractError, match=problem):
        extract(data, format)
