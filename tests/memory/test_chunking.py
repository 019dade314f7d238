"""Chunks follow headings and paragraphs, stay within the limit, and overlap."""

from __future__ import annotations

import pytest

from homeo.memory.chunking import ChunkPolicy, chunk

DOC = """# Guide
Intro paragraph.

## Install
{long}

Short closing paragraph.

```
# a comment in code, not a heading

more code
```

### Linux
apt install homeo
"""


def test_chunks_follow_headings_and_carry_their_path() -> None:
    chunks = chunk(DOC.format(long="Setup is easy."), ChunkPolicy(300, 50))
    assert [c.text.split("\n\n")[0] for c in chunks] == [
        "Guide", "Guide > Install", "Guide > Install > Linux"]
    assert "# a comment in code" in chunks[1].text  # fenced code is never a heading
    assert chunks[2].text == "Guide > Install > Linux\n\napt install homeo"
    assert [c.position for c in chunks] == [0, 1, 2]


def test_every_span_is_the_documents_text_within_the_limit_with_overlap() -> None:
    text = DOC.format(long=" ".join(f"Sentence {i} says something." for i in range(80)))
    policy = ChunkPolicy(300, 60)
    chunks = chunk(text, policy)
    install = [c for c in chunks if c.text.startswith("Guide > Install\n")]
    assert len(install) > 3
    for piece in chunks:
        assert piece.end - piece.start <= policy.max_chars
        assert piece.text.endswith(text[piece.start:piece.end])
    for before, after in zip(install, install[1:]):
        assert after.start < before.end  # they overlap...
        assert before.end - after.start <= policy.overlap_chars  # ...by at most the overlap
    covered = "".join(text[c.start:c.end] for c in install)
    assert "Sentence 79 says something." in covered and "Short closing" in covered


def test_plain_text_has_no_headings_and_long_words_are_cut() -> None:
    chunks = chunk("# not a heading\n\n" + "x" * 250, ChunkPolicy(100, 0), markdown=False)
    assert chunks[0].text == "# not a heading"
    assert [len(c.text) for c in chunks[1:]] == [100, 100, 50]


@pytest.mark.parametrize(("chars", "overlap"), [(50, 0), (200, 101), (200, -1)])
def test_bad_policies_are_refused(chars: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        ChunkPolicy(chars, overlap)
