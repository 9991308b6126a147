"""A few validation examples answered by the base and the tuned model, for the run report.

Built from the tokenized validation rows, so the prompt is exactly what training rendered: a row is cut
before its first trained token (the prompt) and the first run of trained tokens is the reference answer.
"""
from __future__ import annotations

from tunelab.data.tokenize import IGNORE
from tunelab.eval.subject import Subject
from tunelab.serve import GenerationSettings


def prompt_and_reference(row: dict) -> tuple[list[int], list[int]] | None:
    labels = row.get("labels")
    if labels is None or labels[0] != IGNORE:  # plain text (every token trained) has no prompt
        return None
    start = next((i for i, label in enumerate(labels) if label != IGNORE), None)
    if start is None:
        return None
    end = next((i for i in range(start, len(labels)) if labels[i] == IGNORE), len(labels))
    return list(row["input_ids"][:start]), list(row["input_ids"][start:end])


def sample_generations(subject: Subject, rows, count: int = 4, max_new_tokens: int = 64) -> list[dict]:
    pairs = []
    for row in rows:
        found = prompt_and_reference(row)
        if found:
            pairs.append(found)
        if len(pairs) == count:
            break
    if not pairs:
        return []
    settings, prompts = GenerationSettings(max_new_tokens=max_new_tokens), [prompt for prompt, _ in pairs]
    tuned = subject.engine.generate_ids(prompts, settings)
    with subject.as_base() as base_subject:
        base = base_subject.engine.generate_ids(prompts, settings)
    decode = subject.tokenizer.decode
    return [{"prompt": decode(prompt, skip_special_tokens=False), "reference": decode(ref, skip_special_tokens=True),
             "base": b, "tuned": t} for (prompt, ref), b, t in zip(pairs, base, tuned)]
