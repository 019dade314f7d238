"""What an agent's memory keeps, and for how long: the rules, with no storage.

A memory is stored only if it says something new (homeo.memory.memories
applies these rules in this order):

1. `triage`: trivial or transient text is refused with a reason: too short,
   a greeting or acknowledgement, nothing but a date or time, or a secret
   (homeo.safety.credentials: a memory is read back into prompts, so a key
   stored there would leak).
2. `claim_of`: a memory shaped "SUBJECT is VALUE" (also are/was/were,
   "prefers", "lives in", "works at/for") states one value of one subject. A
   new claim about a subject the scope already holds a claim on, with another
   value, contradicts it: the newer one wins (recency), and the old one is
   marked superseded by it. The same value again is a duplicate. Subjects
   match after lower-casing, dropping articles and normalising tense
   ("was" -> "is"), so "The deploy server was db-7" and "deploy server is
   db-9" are about one subject.
3. Near-duplicates: a memory whose embedding is at least `merge_similarity`
   (cosine) from one the scope holds is merged into it (consolidation): the
   existing memory is seen once more, keeps the higher importance and the
   later expiry. When both are claims with different values, it is a
   contradiction instead (step 2, by similarity rather than wording).

Each memory has an importance in (0, 1] that decays with time unused: its
strength is `importance * 0.5 ** (unused / half_life)`. Recall ranks by
relevance weighted by strength; pruning deletes memories whose strength fell
under `floor`, those past their TTL, and superseded ones `superseded_grace`
after they were replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from homeo.safety.credentials import find_secrets

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Policy:
    merge_similarity: float = 0.9  # cosine at or above which two memories are one
    half_life: float = 30 * DAY  # seconds unused after which a memory's strength halves
    floor: float = 0.05  # strength under which pruning deletes a memory
    superseded_grace: float = 7 * DAY  # how long a superseded memory stays visible
    min_chars: int = 12
    min_words: int = 3
    max_chars: int = 2000

    def __post_init__(self) -> None:
        if not 0 < self.merge_similarity <= 1:
            raise ValueError(f"merge_similarity must be in (0, 1], got {self.merge_similarity}")
        if self.half_life <= 0:
            raise ValueError(f"half_life must be positive, got {self.half_life}")


_WORD = re.compile(r"\w+")
_PHATIC = (
    r"(?:hi|hello|hey|hiya|yo|good (?:morning|afternoon|evening|night)|bye|goodbye|"
    r"see you(?: later| soon)?|thanks?(?: you)?|thank you|cheers|ok(?:ay)?|sure|yes|no|yep|"
    r"nope|got it|sounds good|great|cool|nice|you'?re welcome|np|no problem|"
    r"how are you(?: doing)?|i'?m fine|all good|there|everyone|all|again|so much|a lot|"
    r"very much|mate|buddy)")
_GREETING = re.compile(rf"^{_PHATIC}(?:[\s,!.?]+{_PHATIC})*[\s!.?]*$", re.IGNORECASE)
# Dates and times in the usual shapes; text made only of these (and filler
# words) says when, not what.
_WHEN = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[t ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?"
    r"|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|\d{1,2}:\d{2}(?::\d{2})?(?:\s?[ap]\.?m\.?)?"
    r"|\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b|\b\d{9,10}(?:\.\d+)?\b"
    r"|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b\.?"
    r"(?:\s\d{1,2}(?:st|nd|rd|th)?)?(?:,?\s\d{4})?|\b(?:today|tomorrow|yesterday|now|tonight)\b",
    re.IGNORECASE)
_FILLER = frozenset("it is the time date now current currently at on utc gmt am pm".split())


def triage(text: str, policy: Policy = Policy()) -> str | None:
    """Why `text` is not worth remembering, or None when it is."""
    stripped = text.strip()
    if len(stripped) > policy.max_chars:
        return (f"too long ({len(stripped)} characters, at most {policy.max_chars}): a memory"
                " is one fact; put documents in a collection")
    if _GREETING.match(stripped):
        return "a greeting or acknowledgement: it says nothing to remember"
    words = _WORD.findall(stripped)
    if len(stripped) < policy.min_chars or len(words) < policy.min_words:
        return (f"too short ({len(words)} words): say a whole fact, at least"
                f" {policy.min_words} words")
    rest = _WHEN.sub(" ", stripped)
    if all(word.lower() in _FILLER for word in _WORD.findall(rest)):
        return "only a date or time: it is transient, not a fact to remember"
    secrets = find_secrets(stripped)
    if secrets:
        kinds = ", ".join(sorted({span.kind for span in secrets}))
        return f"it holds a secret ({kinds}): secrets are never stored in memory"
    return None


@dataclass(frozen=True, slots=True)
class Claim:
    subject: str  # normalised: the key two claims are compared on
    relation: str
    value: str  # normalised

    @property
    def key(self) -> str:
        return f"{self.subject}|{self.relation}"


# Relations that give a subject one value at a time; tenses folded together.
_RELATIONS = {
    "is": "is", "are": "is", "was": "is", "were": "is", "am": "is", "equals": "is",
    "prefers": "prefers", "preferred": "prefers",
    "lives in": "lives in", "lived in": "lives in",
    "works at": "works at", "worked at": "works at",
    "works for": "works at", "worked for": "works at",
}
_CLAIM = re.compile(
    r"^(?P<subject>.+?)\s+(?P<relation>"
    + "|".join(sorted((re.escape(r) for r in _RELATIONS), key=len, reverse=True))
    + r")\s+(?:now\s+|still\s+)?(?P<value>.+?)[\s.!]*$", re.IGNORECASE)
_ARTICLES = frozenset({"the", "a", "an", "our", "my"})
_MAX_SUBJECT_WORDS = 8


def _normal(words: str) -> str:
    found = [w for w in _WORD.findall(words.lower().replace("'s", " ")) if w not in _ARTICLES]
    return " ".join(found)


def claim_of(text: str) -> Claim | None:
    """The claim `text` makes, if it has the shape SUBJECT RELATION VALUE with a
    short subject (a long one is a sentence, not a subject); else None."""
    match = _CLAIM.match(text.strip())
    if match is None:
        return None
    subject = _normal(match["subject"])
    value = _normal(match["value"])
    if not subject or not value or len(subject.split()) > _MAX_SUBJECT_WORDS:
        return None
    return Claim(subject, _RELATIONS[match["relation"].lower()], value)


def strength(importance: float, last_used_at: float, now: float, policy: Policy) -> float:
    """Importance decayed by the time since the memory was last stored or recalled."""
    unused = max(0.0, now - last_used_at)
    return importance * 0.5 ** (unused / policy.half_life)
