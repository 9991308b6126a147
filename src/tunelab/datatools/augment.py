"""More instruction data from a small set: a model rewords each example's first user instruction, the
answers stay as written, and rewordings that add nothing (empty, the original, the answer, a repeat) are
dropped. Only the instruction's first paragraph is reworded: what follows it (alpaca's `input`, a text to
work on) is kept as written.

The model is reached through a `Generate` function (requests in, one text per request out), so tests and
other callers can put any generator in its place; `engine_generator` wraps tunelab's ChatEngine.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from tqdm.auto import tqdm

from tunelab.data.records import answers, kind_of, normalise
from tunelab.errors import TunelabError

Messages = list[dict[str, str]]
Generate = Callable[[list[Messages]], list[str]]

PARAPHRASE_PROMPT = (
    "Reword the instruction below so that it asks for exactly the same thing in different words. Keep every "
    "detail, name and number. Reply with one reworded instruction only: no quotes, no answer, no explanation."
    "\n\nInstruction: {instruction}"
)
# Lead-ins models put before the rewording ("Paraphrase:", "Here is the reworded instruction:").
LEAD_IN = re.compile(r"^\s*(?:(?:sure|okay|ok)[,!.]?\s*)?(?:here(?:'s| is)[^:\n]*:|(?:reworded|rewritten|paraphrased)?"
                     r"\s*(?:instruction|paraphrase|rewording|rewrite|version)\s*:)\s*", re.IGNORECASE)
QUOTES = "\"'“”‘’«»`"


@dataclass
class AugmentResult:
    examples: list[dict]                               # each original followed by its kept rewordings
    added: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> rewordings dropped


def paraphrase_request(instruction: str) -> Messages:
    return [{"role": "user", "content": PARAPHRASE_PROMPT.format(instruction=instruction)}]


def tidy_paraphrase(text: str, lines: int = 1) -> str:
    """The rewording alone: no lead-in, no surrounding quotes, and no more (non-empty) lines than the
    instruction had, which drops the explanations models add after it."""
    text = LEAD_IN.sub("", text.strip(), count=1)
    kept = "\n".join([line for line in text.splitlines() if line.strip()][:lines]).strip()
    while len(kept) >= 2 and kept[0] in QUOTES and kept[-1] in QUOTES:
        kept = kept[1:-1].strip()
    return kept


def split_instruction(content: str) -> tuple[str, str]:
    """(first paragraph, the rest with its separator): only the first part is reworded."""
    head, separator, rest = content.partition("\n\n")
    return head, separator + rest


def check_conversations(examples: list[dict]) -> None:
    for example in examples:
        if kind_of(example) != "messages":
            raise TunelabError(f"{example.get('source', '?')}: augment rewords the instructions of conversations; "
                               f"this example has {sorted(k for k in example if k != 'source')}")


def first_user_turn(example: dict) -> int | None:
    return next((i for i, m in enumerate(example.get("messages", [])) if m["role"] == "user"), None)


def augment_examples(examples: list[dict], generate: Generate, copies: int = 2, batch_size: int = 8,
                     progress: bool = True) -> AugmentResult:
    """Ask for `copies` rewordings of each conversation's first user turn (sampling makes them differ)."""
    if copies < 1:
        raise TunelabError(f"--n {copies}: expected at least 1 rewording per example")
    check_conversations(examples)
    seen = {_key(_instruction(e, i)) for e in examples if (i := first_user_turn(e)) is not None}
    result = AugmentResult([])
    for start in tqdm(range(0, len(examples), batch_size), desc="augment", unit="batch", disable=not progress):
        chunk = examples[start : start + batch_size]
        asked = [(e, turn) for e in chunk if (turn := first_user_turn(e)) is not None for _ in range(copies)]
        texts = generate([paraphrase_request(_instruction(e, turn)) for e, turn in asked])
        if len(texts) != len(asked):
            raise ValueError(f"the generator returned {len(texts)} texts for {len(asked)} requests")
        new: dict[int, list[dict]] = {}
        for (example, turn), text in zip(asked, texts):
            reworded = _reworded(example, turn, text, seen, result)
            if reworded is not None:
                new.setdefault(id(example), []).append(reworded)
        for example in chunk:
            result.examples += [example, *new.get(id(example), [])]
    return result


def _reworded(example: dict, turn: int, text: str, seen: set[str], result: AugmentResult) -> dict | None:
    """A copy of `example` with the rewording as its first user turn, or None (counted) when it adds nothing."""
    instruction, rest = split_instruction(example["messages"][turn]["content"])
    paraphrase = tidy_paraphrase(text, lines=len([line for line in instruction.splitlines() if line.strip()]))
    key = _key(paraphrase)
    reason = _why_dropped(key, instruction, answers(example), seen)
    if reason:
        result.dropped[reason] += 1
        return None
    seen.add(key)
    result.added += 1
    messages = [dict(message) for message in example["messages"]]
    messages[turn]["content"] = paraphrase + rest
    return {"messages": messages, "source": f"{example.get('source', '?')} (reworded)"}


def _why_dropped(key: str, instruction: str, answer_texts, seen: set[str]) -> str | None:
    if not key:
        return "empty"
    if key == _key(instruction):
        return "same as the original"
    if key in {_key(text) for text in answer_texts}:  # small models often answer instead of rewording
        return "the answer"
    return "repeat" if key in seen else None  # another example's instruction, or an earlier rewording


def _instruction(example: dict, turn: int) -> str:
    return split_instruction(example["messages"][turn]["content"])[0]


def _key(text: str) -> str:
    return normalise(text).casefold()


def engine_generator(engine, settings) -> Generate:
    """tunelab's ChatEngine as a `Generate` function (the model's own chat template renders each request)."""
    return lambda requests: engine.generate(requests, settings)
