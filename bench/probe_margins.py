"""How firmly the base model answers each general question of the forgetting sets: its greedy answer (fp32, as
`tunelab eval` scores it), and along that answer, up to the token where an accepted keyword appears, the smallest gap
between the most and the second most likely next token (tunelab.eval.firmness, the forgetting report's "base by").

A question the base answers by a gap of 0.01 flips under almost any change to the model, guarded or not: read such a
loss in bench/forgetting.py as a coin toss, and a loss of a firmly answered question as forgetting.

    .venv/bin/python bench/probe_margins.py                         # builtin:probes and builtin:general_heldout
    .venv/bin/python bench/probe_margins.py --model RUN --sets my_questions.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def questions(spec: str) -> list[dict]:
    """{messages (the prompt), reference, accepted} per question of a set: any data `tunelab eval` reads."""
    from tunelab.data.formats import ACCEPTED
    from tunelab.data.loading import load_examples
    from tunelab.eval.runner import split_reference

    found = []
    for example in load_examples(spec):
        prompt, reference = split_reference(example["messages"])
        found.append({"messages": prompt, "reference": reference, "accepted": example.get(ACCEPTED, [])})
    return found


def firmness(engine, question: dict, max_new_tokens: int) -> dict:
    """The base's greedy answer to one question, whether `contains` scores it right, and how firmly it was given
    (tunelab.eval.firmness: what the forgetting report shows as "base by")."""
    from tunelab.eval.firmness import answer_gap, keyword_tokens
    from tunelab.eval.metrics import Scored, score_example
    from tunelab.serve import GenerationSettings

    messages, accepted = question["messages"], question["accepted"] or [question["reference"]]
    answer = engine.generate([messages], GenerationSettings(max_new_tokens=max_new_tokens))[0]
    answered = score_example(Scored(answer, question["reference"], question["accepted"]), ["contains"])["contains"]
    upto = engine.tokenizer.decode(keyword_tokens(engine.tokenizer, answer, accepted))
    return {"question": messages[-1]["content"], "answered": answered == 100, "answer": answer, "up_to": upto,
            "gap_p": answer_gap(engine, messages, answer, accepted)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model.path of the base (default: builtin)")
    parser.add_argument("--sets", nargs="+", default=["builtin:probes", "builtin:general_heldout"])
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--results", help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    import torch

    from tunelab.runs import load_any
    from tunelab.serve import ChatEngine

    engine = ChatEngine(load_any(args.model, torch.float32))  # fp32, as `tunelab eval` scores the probes
    rows = []
    print("| set | base answers | smallest gap (p) | question | answer up to the accepted word |")
    print("|---|---|---|---|---|")
    for spec in args.sets:
        for question in questions(spec):
            row = {"set": spec, **firmness(engine, question, args.max_new_tokens)}
            rows.append(row)
            gap = "-" if row["gap_p"] is None else f"{row['gap_p']:.3f}"
            print(f"| {spec} | {'yes' if row['answered'] else 'no'} | {gap} | {row['question']} "
                  f"| {' '.join(row['up_to'].split())[-70:]} |", flush=True)
    firm = [r for r in rows if r["answered"] and (r["gap_p"] or 0) >= 0.05]
    print(f"\n{sum(r['answered'] for r in rows)} answered by the base, {len(firm)} of them by a gap of 0.05 or more")
    if args.results:
        Path(args.results).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
