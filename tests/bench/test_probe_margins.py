"""The probe-margin benchmark reports the base's greedy answer and the smallest top-1/top-2 gap along it (on the tiny
random model; the real numbers are in docs/training.md)."""
import json

import torch
from transformers import AutoModelForCausalLM

BENCH_NAME = "probe_margins"  # loaded by the bench fixture (conftest.py)


def _greedy(model, tokenizer, question: str, steps: int) -> tuple[list[int], list[float]]:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    answer, gaps = [], []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=ids).logits[0, -1].float()
            probs = torch.softmax(logits, -1).topk(2).values
            gaps.append((probs[0] - probs[1]).item())
            token = int(logits.argmax())
            answer.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return answer, gaps


def test_gap_is_the_smallest_along_the_greedy_answer(bench, tiny_model_dir, tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    question = {"instruction": "What is the capital of France?", "expect": ["zzzz-never"]}
    row = bench.greedy_gaps(model, tiny_tokenizer, question, max_new_tokens=6)
    answer, gaps = _greedy(model, tiny_tokenizer, question["instruction"], 6)
    assert not row["answered"]  # the keyword never appears: 6 tokens, or fewer if EOS came first
    eos = tiny_tokenizer.eos_token_id
    assert row["tokens"] == (answer.index(eos) + 1 if eos in answer else 6)
    assert abs(row["gap_p"] - min(gaps[: row["tokens"]])) < 1e-6
    assert 0.0 <= row["gap_p"] <= 1.0 and row["gap_logp"] >= 0.0


def test_answered_stops_at_the_keyword(bench, tiny_model_dir, tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    answer, _ = _greedy(model, tiny_tokenizer, "Hello?", 1)
    first = tiny_tokenizer.decode(answer, skip_special_tokens=True).strip()
    if not first:  # a special token first: nothing to look for
        return
    row = bench.greedy_gaps(model, tiny_tokenizer, {"instruction": "Hello?", "expect": [first]}, max_new_tokens=8)
    assert row["answered"] and row["answer"].strip() == first


def test_question_files_resolve_builtin_names(bench):
    path = bench.question_file("builtin:probes")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert rows and all("expect" in row and "instruction" in row for row in rows)
