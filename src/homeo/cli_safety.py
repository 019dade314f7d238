"""`homeo safety`: check a text with the guards, and train the injection classifier.

No server or database is needed: the guards run in this process."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from homeo.cli_common import CONTEXT, console, fail, json_errors, print_json


class Reading(str, Enum):
    input = "input"
    document = "document"


safety_app = typer.Typer(help="Check text with the safety guards; train the injection classifier.",
                         no_args_is_help=True, context_settings=CONTEXT)


@safety_app.command("check")
def check(
    text: Annotated[str, typer.Argument(help="The text to check; - reads it from stdin.")],
    guard: Annotated[list[str] | None, typer.Option(
        "--guard", help="Only this guard (injection, secrets, pii); repeat for more.")] = None,
    reading: Annotated[Reading, typer.Option(
        help="How the injection classifier reads the text: input (a user's or a model's"
             " text) or document (a tool's output or a retrieved document).")] = Reading.input,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON, as POST /v1/safety/check returns it.")] = False,
) -> None:
    """Run the guards on TEXT and print each one's verdict and the redacted text."""
    from homeo.safety import guards as safety_guards

    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        fail("the text is empty: pass the text to check, or - to read it from stdin", code=2)
    try:
        checked = safety_guards.check(
            safety_guards.build(guard or safety_guards.GUARD_NAMES, reading.value), text)
    except safety_guards.GuardUnavailable as error:
        fail(str(error), code=2)
    if as_json:
        print(json.dumps(checked.to_json(), ensure_ascii=False))
        return
    for verdict in checked.verdicts:
        mark = "FLAGGED" if verdict.flagged else "ok"
        print(f"{verdict.guard:<10} {mark:<8} score {verdict.score:.2f}"
              f" (threshold {verdict.threshold:.2f})  {verdict.reason}")
        for span in verdict.spans:
            shown = text[span.start:span.end].replace("\n", " ")
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            print(f"  {span.kind} [{span.start}:{span.end}] {shown}")
    if checked.redacted != text:
        print("redacted:")
        print(checked.redacted)


@safety_app.command("train")
def train(
    seed: Annotated[int, typer.Option(help="Seed of the generated texts and the head.")] = 0,
    out: Annotated[Path | None, typer.Option(
        help="Folder for the heads and their cards (injection-*.npz, injection-*.json)"
             " [default: the package's, which the guard loads].")] = None,
    limit: Annotated[int | None, typer.Option(
        min=20, help="At most this many texts of each source per split: a quick trial.")] = None,
    reading: Annotated[list[Reading] | None, typer.Option(
        help="Only this head (input, document); repeat for both [default: both].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: the files"
                                          " written and the model cards.")] = False,
) -> None:
    """Rebuild the injection classifier's heads (input, document) from the pinned
    corpora, the generated agent texts and the documentation here, offline."""
    from homeo.llm.base import ModelError
    from homeo.safety import train as training
    from homeo.safety.corpus import CorpusError
    from homeo.safety.injection import MODEL_DIR

    folder = out or MODEL_DIR
    with json_errors(as_json):
        try:
            trained = training.train(
                seed, limit=limit, log=lambda line: console.print(line, markup=False),
                readings=tuple(dict.fromkeys(r.value for r in reading or list(Reading))))
        except (CorpusError, ModelError) as error:
            fail(str(error), code=2)
        except ImportError as error:
            fail(f"training needs scikit-learn ({error}): pip install 'homeo[safety]'", code=2)
    written = training.save(trained, folder)
    cards = {name: json.loads((folder / f"{training.READINGS[name].prefix}-card.json")
                              .read_text()) for name in trained}  # as written: with their hashes
    if as_json:
        print_json({"paths": [str(path) for path in written], "cards": cards})
        return
    for name, card in cards.items():
        print(f"{name}: a {card['head']} head, threshold {card['threshold']}"
              f" (trained in {card['seconds']}s)")
        for test_set, figures in card["test"].items():
            print(f"  test {test_set:<15} precision {figures['precision']:.3f} recall"
                  f" {figures['recall']:.3f} F1 {figures['f1']:.3f} FPR {figures['fpr']:.3f}"
                  f" (n {figures['n']})")
    print("wrote " + ", ".join(str(path) for path in written))
