"""Training data curated from an agent's successful runs (`homeo train curate`).

A run becomes one chat example: its input as the user's turn, its output as the
assistant's. Runs that did not succeed, or whose evaluation score is below the
bar, are left out; near-duplicates (MinHash over word 3-grams, Jaccard at or
above `duplicate_threshold`, found with datasketch's LSH) keep only their first
occurrence; secrets and personal data are replaced by typed labels (`<JWT>`,
`<EMAIL_ADDRESS>`) before anything is stored. The rest is split into train and
validation by a seeded shuffle, and stored as the next version of the data set,
with the run ids and counts it came from.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from homeo.store.base import Store
from homeo.store.models import DatasetRecord, Run

_WORD = re.compile(r"\w+")
_PERMUTATIONS = 128


class CurateError(Exception):
    """No data set could be made; the message says why and what to change."""


@dataclass(frozen=True)
class CurateRules:
    agent: str
    min_score: float | None = None  # None: runs without an evaluation count too
    duplicate_threshold: float = 0.8
    validation_fraction: float = 0.2
    limit: int = 1000  # the newest runs looked at
    seed: int = 0


def shingles(text: str, size: int = 3) -> set[str]:
    words = _WORD.findall(text.lower())
    if len(words) < size:
        return {" ".join(words)}
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def drop_near_duplicates(texts: Sequence[str], threshold: float) -> list[int]:
    """The indexes of `texts` to keep: each text whose estimated Jaccard
    similarity to an earlier kept one reaches `threshold` is dropped."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=_PERMUTATIONS)
    kept = []
    for index, text in enumerate(texts):
        signature = MinHash(num_perm=_PERMUTATIONS, seed=1)
        signature.update_batch([s.encode() for s in shingles(text)])
        if lsh.query(signature):
            continue
        lsh.insert(str(index), signature)
        kept.append(index)
    return kept


def scrub_for_training(text: str) -> str:
    """`text` with secrets (homeo.safety.scrub) and personal data (presidio)
    replaced by labels."""
    from homeo.safety.pii import find_pii
    from homeo.safety.redact import redact
    from homeo.safety.scrub import scrub

    without_secrets = scrub(text)
    return redact(without_secrets, find_pii(without_secrets, threshold=0.4))


def curate(
    store: Store,
    tenant_id: str,
    name: str,
    rules: CurateRules,
    *,
    now: float,
    scrub_text: Callable[[str], str] = scrub_for_training,
) -> DatasetRecord:
    """Make and store the next version of the data set `name` from the tenant's
    runs of `rules.agent`."""
    if not 0 <= rules.validation_fraction < 1:
        raise CurateError("the validation fraction is at least 0 and below 1")
    runs = store.list_runs(tenant_id, status="succeeded", agent=rules.agent, limit=rules.limit)
    runs = [run for run in reversed(runs) if run.output]  # oldest first: the first copy stays
    if not runs:
        raise CurateError(f"agent {rules.agent!r} has no succeeded runs with an output in"
                          f" tenant {tenant_id!r}; run it first")
    scores = {result.run_id: result.score
              for result in store.list_eval_results(tenant_id, rules.agent)}
    scored = [run for run in runs if _passes(run, scores, rules.min_score)]
    kept = [scored[i] for i in drop_near_duplicates(
        [f"{run.input}\n{run.output}" for run in scored], rules.duplicate_threshold)]
    examples = []
    scrubbed = 0
    for run in kept:
        prompt, answer = scrub_text(run.input), scrub_text(run.output or "")
        scrubbed += (prompt != run.input) + (answer != run.output)
        examples.append({"run_id": run.id, "messages": [
            {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
    if not examples:
        raise CurateError(f"none of {len(runs)} succeeded runs passed the filters"
                          f" (min score {rules.min_score}); lower --min-score")
    random.Random(rules.seed).shuffle(examples)
    held_out = round(len(examples) * rules.validation_fraction) if len(examples) > 1 else 0
    if rules.validation_fraction > 0 and len(examples) > 1:
        held_out = max(held_out, 1)
    validation, train = examples[:held_out], examples[held_out:]
    provenance = {
        "agent": rules.agent, "runs_seen": len(runs),
        "below_min_score": len(runs) - len(scored),
        "near_duplicates": len(scored) - len(kept), "texts_scrubbed": scrubbed,
        "min_score": rules.min_score, "duplicate_threshold": rules.duplicate_threshold,
        "validation_fraction": rules.validation_fraction, "seed": rules.seed,
        "run_ids": sorted(example["run_id"] for example in examples),
    }
    digest = hashlib.sha256(json.dumps([train, validation], sort_keys=True).encode()).hexdigest()
    return store.put_dataset(DatasetRecord(tenant_id=tenant_id, name=name, train=train,
                                           validation=validation, provenance=provenance,
                                           sha256=digest, created_at=now))


def _passes(run: Run, scores: dict[str, float], min_score: float | None) -> bool:
    if min_score is None:
        return True
    score = scores.get(run.id)
    return score is not None and score >= min_score
