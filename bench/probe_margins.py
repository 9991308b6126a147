"""How firmly the base model answers each general question of the forgetting sets: its greedy answer (fp32, as
`tunelab eval` scores it), and along that answer, up to the token where an accepted keyword appears, the smallest gap
between the most and the second most likely next token (probability, and log-probability).

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
BUILTIN = ROOT / "src" / "tunelab" / "builtin_data"


def question_file(spec: str) -> Path:
    return BUILTIN / f"{spec.removeprefix('builtin:')}.jsonl" if spec.startswith("builtin:") else Path(spec)


def greedy_gaps(model, tokenizer, question: dict, max_new_tokens: int) -> dict:
    """The greedy answer to one question and the smallest top-1/top-2 gap on the way to its keyword."""
    import torch

    ids = tokenizer.apply_chat_template([{"role": "user", "content": question["instruction"]}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    answer, worst = [], {"gap_p": 1.0, "gap_logp": float("inf"), "at": ""}
    expect = [keyword.lower() for keyword in question["expect"]]
    with torch.no_grad():
        for _ in range(max_new_tokens):
            top = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1).topk(2)
            gap = (top.values[0].exp() - top.values[1].exp()).item()
            if gap < worst["gap_p"]:
                first, second = (tokenizer.decode([int(i)]) for i in top.indices)
                worst = {"gap_p": gap, "gap_logp": (top.values[0] - top.values[1]).item(),
                         "at": f"{tokenizer.decode(answer)!r}: {first!r} over {second!r}"}
            token = int(top.indices[0])
            answer.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            text = tokenizer.decode(answer, skip_special_tokens=True).lower()
            if token == tokenizer.eos_token_id or any(keyword in text for keyword in expect):
                break
    text = tokenizer.decode(answer, skip_special_tokens=True)
    return {"question": question["instruction"], "answered": any(k in text.lower() for k in expect),
            "answer": text, "tokens": len(answer), **worst}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model.path of the base (default: builtin)")
    parser.add_argument("--sets", nargs="+", default=["builtin:probes", "builtin:general_heldout"])
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--results", help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.models.sources import resolve_model

    location = resolve_model(args.model).location
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32).eval()
    rows = []
    print("| set | base answers | smallest gap (p) | (log p) | question | where |")
    print("|---|---|---|---|---|---|")
    for spec in args.sets:
        for line in question_file(spec).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = {"set": spec, **greedy_gaps(model, tokenizer, json.loads(line), args.max_new_tokens)}
                rows.append(row)
                print(f"| {spec} | {'yes' if row['answered'] else 'no'} | {row['gap_p']:.3f} | {row['gap_logp']:.2f} "
                      f"| {row['question']} | {row['at'][-70:]} |", flush=True)
    firm = [r for r in rows if r["answered"] and r["gap_p"] >= 0.05]
    print(f"\n{sum(r['answered'] for r in rows)} answered by the base, {len(firm)} of them by a gap of 0.05 or more")
    if args.results:
        Path(args.results).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
