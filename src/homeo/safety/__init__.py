"""Guards that read text an agent takes in or gives out and say whether it is safe.

Each guard answers `check(text) -> Verdict` (verdict.py): the injection and
jailbreak classifier (injection.py, its trained head in head.py and the
artefact in model/), secrets (secrets.py) and PII (pii.py); redact.py turns
their spans into typed labels. guards.py builds them together. The
guards are detectors only: runs and tool outputs do not pass through them yet.
"""
