"""`curate`: succeeded runs become a versioned data set, near-duplicates dropped,
secrets and personal data scrubbed, filtered by evaluation score, split."""

from __future__ import annotations

import pytest

pytest.importorskip("datasketch")

from homeo.backends import Backends
from homeo.evolve.curate import CurateError, CurateRules, curate, drop_near_duplicates
from homeo.store.models import EvalResult, NewRun

SECRET = "AKIA" + "IOSFODNN7EXAMPLE"  # an AWS access key id


def _run(backends: Backends, question: str, answer: str, status: str = "succeeded",
         agent: str = "helper", tenant: str = "acme") -> str:
    run, _ = backends.store.create_run(NewRun(tenant_id=tenant, agent=agent, input=question))
    backends.store.transition_run(tenant, run.id, status, allowed_from={"queued"},
                                  output=answer if status == "succeeded" else None)
    return run.id


def test_near_duplicates_keep_their_first_copy() -> None:
    texts = ["how do I reset my password on the billing portal today please",
             "how do I reset my password on the billing portal today please!",
             "what is the refund policy for annual plans bought in europe"]
    assert drop_near_duplicates(texts, 0.8) == [0, 2]


@pytest.mark.slow  # presidio loads spaCy's model
def test_curate_filters_dedups_scrubs_and_splits(backends: Backends) -> None:
    kept = [_run(backends, f"Question {i}: how do I export report number {i} as a csv file"
                           f" from the {word} dashboard?", f"Open {word}, choose export {i}.")
            for i, word in enumerate(["sales", "billing", "support", "growth"])]
    _run(backends, "Question 0: how do I export report number 0 as a csv file from the sales"
                   " dashboard?", "Open sales, choose export 0.")  # a near-duplicate
    secret = _run(backends, f"My token is {SECRET}, email me at jane.doe@example.com",
                  "I will not use your token.")
    _run(backends, "a failed run", "", status="failed")
    _run(backends, "another agent's run", "its answer", agent="other")
    low = _run(backends, "A question whose answer was graded badly by the suite",
               "a bad answer")
    backends.store.put_eval_results([
        EvalResult(tenant_id="acme", eval_id="e1", suite="s", agent="helper",
                   agent_version="v1", case_id="c", run_id=low, status="succeeded",
                   score=0.2, passed=False, at=1.0),
        EvalResult(tenant_id="acme", eval_id="e1", suite="s", agent="helper",
                   agent_version="v1", case_id="d", run_id=kept[0], status="succeeded",
                   score=0.9, passed=True, at=1.0)])

    dataset = curate(backends.store, "acme", "support", CurateRules(agent="helper"), now=5.0)
    assert dataset.version == 1 and len(dataset.sha256) == 64
    examples = dataset.train + dataset.validation
    assert len(dataset.validation) == 1 and len(examples) == 6
    assert dataset.provenance["near_duplicates"] == 1
    assert dataset.provenance["run_ids"] == sorted([*kept, secret, low])
    text = "\n".join(m["content"] for e in examples for m in e["messages"])
    assert SECRET not in text and "jane.doe@example.com" not in text
    assert "<EMAIL_ADDRESS>" in text
    assert dataset.provenance["texts_scrubbed"] == 1
    assert all(e["messages"][-1]["role"] == "assistant" for e in examples)

    graded = curate(backends.store, "acme", "support",
                    CurateRules(agent="helper", min_score=0.5), now=6.0)
    assert graded.version == 2
    assert graded.provenance["run_ids"] == [kept[0]]
    assert graded.provenance["below_min_score"] == 6  # every run but kept[0]
    assert backends.store.get_dataset("acme", "support") == graded
    assert backends.store.get_dataset("globex", "support") is None


def test_min_score_with_no_scores_is_explained(backends: Backends) -> None:
    _run(backends, "a question", "an answer")
    with pytest.raises(CurateError, match="lower --min-score"):
        curate(backends.store, "acme", "support", CurateRules(agent="helper", min_score=0.5),
               now=1.0, scrub_text=str)
    with pytest.raises(CurateError, match="no succeeded runs"):
        curate(backends.store, "acme", "support", CurateRules(agent="nobody"), now=1.0)
