"""How firmly the base gives a right answer: along its own greedy answer, up to the token where an accepted answer
first appears, the smallest gap between the two most likely next tokens (probabilities, 0-1).

Why: a fine-tune that "lost" a question the base answered by a gap of 0.01 flipped a coin toss, which any change to
the weights can do; losing one answered by a gap of 0.1 is forgetting. On the default model 12 of the 25
general questions it answers hang on a gap under 0.05 (bench/probe_margins.py, docs/training.md). One
teacher-forced pass of the base over its own answer gives the gaps greedy decoding chose between.
"""
from __future__ import annotations

import torch

from tunelab.eval.metrics import normalize


def keyword_tokens(tokenizer, answer: str, accepted: list[str]) -> list[int]:
    """The answer's tokens up to the first one whose prefix contains an accepted answer (normalised as `contains`
    compares); all of them when none does."""
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    wanted = [normalize(word) for word in accepted if normalize(word)]
    for end in range(1, len(ids) + 1):
        text = normalize(tokenizer.decode(ids[:end], skip_special_tokens=True))
        if any(word in text for word in wanted):
            return ids[:end]
    return ids


@torch.inference_mode()
def answer_gap(engine, messages: list[dict], answer: str, accepted: list[str]) -> float | None:
    """The smallest top-1/top-2 probability gap over the positions that predict the answer's tokens (up to its
    keyword), with the engine's model as it is now (the caller switches to the base); None for an empty answer."""
    ids = keyword_tokens(engine.tokenizer, answer, accepted)
    if not ids:
        return None
    prompt = engine.chat_prompt(messages)
    logits = engine.model(input_ids=torch.tensor([prompt + ids], device=engine.device)).logits[0]
    # counted from the end: a prompt-tuning model prepends virtual positions to the logits
    probs = torch.softmax(logits[-len(ids) - 1 : -1].float(), dim=-1).topk(2, dim=-1).values
    return float((probs[:, 0] - probs[:, 1]).min())
