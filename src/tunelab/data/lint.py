"""The template lint: what would make a fine-tune silently wrong, found before training, each with its fix.

(a) the end-of-turn token the template writes is not a single special token (generation can never stop on it);
(b) an answer's trained labels do not end with a token generation stops on (the model never learns to stop);
(c) an answer cannot be located where generation would write it (the template renders the turn nowhere after
    the generation prompt of the turns before it; templates that rewrite earlier turns are trained turn by turn);
(d) a think block would be trained empty (the model learns to skip its reasoning): empty blocks are left
    untrained except where the generation prompt opens one that nothing else can close (DeepSeek-R1);
(e) the template differs from the one saved with the run being continued.

`tunelab data inspect` prints them; `tunelab train` logs them as warnings, or stops on them with `--strict`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from tunelab.data.families import end_of_turn_tokens
from tunelab.errors import TunelabError

SAMPLE = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is six times seven?"},
    {"role": "assistant", "content": "Six times seven is 42."},
    {"role": "user", "content": "And six times eight?"},
    {"role": "assistant", "content": "Six times eight is 48."},
]
EMPTY_THINK = re.compile(r"<think>\s*</think>")


@dataclass(frozen=True)
class Finding:
    code: str      # a..e
    message: str   # what is wrong, where, and the fix

    def __str__(self) -> str:
        return f"template lint ({self.code}): {self.message}"


def linted_conversations(examples: list[dict]) -> list[tuple[str, list[dict]]]:
    """(source, messages) of the data's conversations the lint reads: the first one and the first two with several
    answers (where templates that rewrite earlier turns show)."""
    conversations = [(example.get("source", "data"), example["messages"]) for example in examples
                     if isinstance(example.get("messages"), list)]
    multi = [item for item in conversations if sum(m["role"] == "assistant" for m in item[1]) > 1]
    return conversations[:1] + multi[:2]


def lint_template(tokenizer, conversations: list[tuple[str, list[dict]]] = (),
                  saved_template: str | None = None) -> list[Finding]:
    """Findings for the template in force on `tokenizer`, checked on a sample conversation and on
    `conversations` ((source, messages) from the data: the first multi-turn ones are enough)."""
    if not tokenizer.chat_template:
        return []
    sample = _sample(tokenizer)
    findings = [*_split_end_of_turn(tokenizer, sample)]
    for source, messages in [("a sample conversation", sample), *conversations]:
        try:
            findings += _conversation_findings(tokenizer, source, messages)
        except Exception as exc:  # noqa: BLE001 - the template itself refuses it (jinja raise_exception)
            findings.append(Finding("c", f"{source}: the chat template refuses this conversation ({exc})"))
    if saved_template is not None and saved_template != tokenizer.chat_template:
        findings.append(Finding("e", "the chat template differs from the one saved with the run being continued, "
                                "so the model sees turns written another way than it was trained on; drop "
                                "data.template to keep the run's own, or start from the run's merged model"))
    return _unique(findings)


def _sample(tokenizer) -> list[dict]:
    """The sample conversation, without its system message where the template refuses one (Gemma 1/2)."""
    from tunelab.data.templates import render_conversation

    try:
        render_conversation(tokenizer, SAMPLE)
        return SAMPLE
    except Exception:  # noqa: BLE001 - jinja's raise_exception in the template
        return SAMPLE[1:]


def _split_end_of_turn(tokenizer, sample: list[dict]) -> list[Finding]:
    """(a): end-of-turn tokens the template writes that the tokenizer splits into pieces."""
    from tunelab.data.templates import render_conversation

    text = render_conversation(tokenizer, sample[:-2])
    findings = []
    for token in end_of_turn_tokens():
        if token in text:
            pieces = tokenizer(token, add_special_tokens=False)["input_ids"]
            if len(pieces) != 1:
                findings.append(Finding("a", f"the template ends turns with {token!r}, which this tokenizer splits "
                                        f"into {len(pieces)} tokens, so generation can never stop on it; add it as "
                                        "a special token (tunelab does when data.template names the template) or "
                                        "use the tokenizer's own template"))
    return findings


def _conversation_findings(tokenizer, source: str, messages: list[dict]) -> list[Finding]:
    from tunelab.data.tokenize import TokenizeStats, conversation_rows

    try:
        rows = conversation_rows(tokenizer, {"messages": messages, "source": source}, 1 << 20, TokenizeStats())
    except TunelabError as exc:
        return [Finding("c", str(exc))]
    return [finding for row in rows for finding in _row_findings(tokenizer, source, row)]


def _row_findings(tokenizer, source: str, row: dict) -> list[Finding]:
    from tunelab.data.stops import stop_token_ids
    from tunelab.data.tokenize import IGNORE, _turn_ends

    findings, stops = [], set(stop_token_ids(tokenizer))
    ends = _turn_ends(row["labels"])
    if any(row["input_ids"][end] not in stops for end in ends):
        last = tokenizer.decode(row["input_ids"][ends[0]:ends[0] + 1])
        findings.append(Finding("b", f"{source}: a trained answer ends with {last!r}, which generation does not stop "
                                "on, so the fine-tune will not learn to stop; use a template that ends answers "
                                "with EOS or an end-of-turn token, or give the tokenizer an eos_token"))
    trained = [i for i, label in enumerate(row["labels"]) if label != IGNORE]
    if trained and any(_trains_empty_think(tokenizer, row["input_ids"], start, end) for start, end in _runs(trained)):
        findings.append(Finding("d", f"{source}: answers without reasoning are trained with an empty think block, "
                                "so the model learns to skip its reasoning (the template opens the block in its "
                                "generation prompt and has no thinking switch, so the model must learn to close it); "
                                "give the data its reasoning, or use a data.template without thinking"))
    return findings


def _trains_empty_think(tokenizer, ids: list[int], start: int, end: int) -> bool:
    """Whether the trained run ids[start:end+1] closes a think block with nothing in it (opened in the run or
    before it)."""
    run = tokenizer.decode(ids[start:end + 1])
    if "</think>" not in run:
        return False
    before = tokenizer.decode(ids[:start])
    opened = before[before.rfind("<think>"):] if before.rfind("<think>") > before.rfind("</think>") else ""
    return bool(EMPTY_THINK.search(opened + run[:run.index("</think>") + len("</think>")]))


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    runs, start = [], indices[0]
    for previous, current in zip(indices, indices[1:]):
        if current != previous + 1:
            runs.append((start, previous))
            start = current
    return [*runs, (start, indices[-1])]


def _unique(findings: list[Finding]) -> list[Finding]:
    seen, kept = set(), []
    for finding in findings:
        key = (finding.code, finding.message.split(":")[-1])
        if key not in seen:
            seen.add(key)
            kept.append(finding)
    return kept


def report(findings: list[Finding], strict: bool, log) -> None:
    """Warn about each finding; under --strict, stop with all of them."""
    if strict and findings:
        raise TunelabError("--strict: " + "; ".join(str(finding) for finding in findings))
    for finding in findings:
        log.warning("%s", finding)
