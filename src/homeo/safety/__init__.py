"""Guards that read text an agent takes in or gives out and say whether it is safe.

Each guard answers `check(text) -> Verdict` (verdict.py): the injection and
jailbreak classifier (injection.py, its trained head in head.py and the
artefact in model/), secrets (secrets.py) and PII (pii.py); redact.py turns
their spans into typed labels. guards.py builds them together. policy.py
says what a finding leads to at each boundary of a run, per tenant and agent;
screen.py applies it (the runtime builds one SafetyGuards and hands each run
its Screen through the run's context).
"""
