"""`tunelab eval` and the `eval:` section of a training config: score a model (and optionally its base) on a
data set, batch by batch, writing predictions.jsonl as it goes and eval.json at the end.

Per batch: generate answers (when a text metric needs them), score each against its reference, and reduce
the reference answers' loss to (nll, tokens) per example. Only strings and those two numbers outlive a batch.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from tunelab.data.reasoning import answer_of
from tunelab.data.tokenize import TokenizeStats, conversation_rows, tokenize_text
from tunelab.errors import TunelabError
from tunelab.eval.metrics import LABEL_METRICS, TEXT_METRICS, Scored, corpus_bleu, corpus_scores, score_example
from tunelab.eval.moved import moved_of
from tunelab.eval.output import EvalWriter, write_result
from tunelab.eval.perplexity import pad_batch
from tunelab.eval.subject import Subject
from tunelab.models.device import dtype_name
from tunelab.models.tokens import pad_id
from tunelab.serve import GenerationSettings


@dataclass
class EvalSettings:
    metrics: list[str]
    max_new_tokens: int = 128
    batch_size: int = 8
    compare_base: bool = False
    limit: int | None = None
    max_length: int = 1024   # longest reference conversation scored for perplexity (cut like training)


@dataclass
class Side:
    """Running totals of one model (tuned or base) over the set."""
    scored: list[Scored] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    nll: float = 0.0
    tokens: int = 0

    def metrics(self, names: list[str]) -> dict[str, float]:
        result = corpus_scores(self.scored, self.rows, names) if self.scored else {}
        if "perplexity" in names and self.tokens:
            result["perplexity"] = math.exp(self.nll / self.tokens)
            result["answer_loss"] = self.nll / self.tokens
        return result


def evaluate(subject: Subject, examples: list[dict], settings: EvalSettings, output: Path, about: dict) -> dict:
    """Score `examples`; returns (and writes to output/eval.json) the eval record."""
    examples = examples[: settings.limit] if settings.limit else examples
    if not examples:
        raise TunelabError(f"{about.get('data')}: no examples to evaluate")
    if any(name in LABEL_METRICS for name in settings.metrics):
        from tunelab.eval.classification import evaluate_classifier

        return evaluate_classifier(subject, examples, settings, output, about)
    check_examples(examples, settings.metrics, about.get("data"))
    started = time.perf_counter()
    tuned, base = Side(), Side() if settings.compare_base else None
    with EvalWriter(output) as writer:
        for start in tqdm(range(0, len(examples), settings.batch_size), desc="eval", unit="batch"):
            chunk = examples[start : start + settings.batch_size]
            lines = [_line(example) for example in chunk]
            _score_batch(subject, chunk, lines, tuned, settings, "")
            if base is not None:
                with subject.as_base() as base_subject:
                    _score_batch(base_subject, chunk, lines, base, settings, "base_")
                    if "contains" in settings.metrics:
                        _mark_base_gaps(base_subject, chunk, lines)
            writer.predictions(lines)
        record = _record(tuned, base, settings, about, len(examples), time.perf_counter() - started)
        writer.result(record)
    return record


def check_examples(examples: list[dict], names: list[str], data) -> None:
    text_metrics = [name for name in names if name in TEXT_METRICS]
    plain = next((e for e in examples if "messages" not in e), None)
    if plain is None:
        return
    if "text" not in plain:
        raise TunelabError(f"{plain.get('source', data)}: evaluation needs conversations (a prompt and a reference "
                           "answer) or plain text; this record is neither")
    if text_metrics:
        raise TunelabError(f"{plain.get('source', data)}: plain text has no reference answer for "
                           f"{', '.join(text_metrics)}; use --metrics perplexity")


def _line(example: dict) -> dict:
    if "messages" not in example:
        return {"source": example.get("source"), "input": example["text"][:200]}
    prompt, reference = split_reference(example["messages"])
    line = {"source": example.get("source"), "input": prompt[-1]["content"] if prompt else "", "reference": reference}
    if example.get("expect"):
        line["accepted"] = example["expect"]
    return line


def split_reference(messages: list[dict]) -> tuple[list[dict], str]:
    """(the conversation up to the last assistant turn, that turn's text)."""
    last = max(i for i, message in enumerate(messages) if message["role"] == "assistant")
    return messages[:last], messages[last]["content"]


def _score_batch(subject: Subject, chunk: list[dict], lines: list[dict], side: Side, settings: EvalSettings,
                 prefix: str) -> None:
    if any(name in TEXT_METRICS for name in settings.metrics):
        prompts = [split_reference(example["messages"])[0] for example in chunk]
        predictions = subject.generate(prompts, GenerationSettings(max_new_tokens=settings.max_new_tokens))
        for line, generated in zip(lines, predictions):
            reasoning, prediction = answer_of(generated)  # a reasoning model is scored on its answer
            scored = Scored(prediction, line["reference"], line.get("accepted", []))
            scores = score_example(scored, settings.metrics)
            side.scored.append(scored)
            side.rows.append(scores)
            line.update({f"{prefix}prediction": prediction, f"{prefix}scores": scores,
                         **({f"{prefix}reasoning": reasoning} if reasoning is not None else {})})
    if "perplexity" in settings.metrics:
        _score_loss(subject, chunk, lines, side, settings.max_length, prefix)


def _mark_base_gaps(base: Subject, chunk: list[dict], lines: list[dict]) -> None:
    """`base_gap` on each line the base answers correctly: how firmly it does (tunelab.eval.firmness). Not for an
    answer that followed a reasoning block: the answer alone, teacher-forced after the prompt, is not what it saw."""
    for example, line in zip(chunk, lines):
        if line.get("base_scores", {}).get("contains") == 100 and "base_reasoning" not in line:
            gap = base.answer_gap(split_reference(example["messages"])[0], line["base_prediction"],
                                  line.get("accepted") or [line["reference"]])
            if gap is not None:
                line["base_gap"] = round(gap, 4)


def _score_loss(subject: Subject, chunk: list[dict], lines: list[dict], side: Side, max_length: int,
                prefix: str) -> None:
    stats, rows, where = TokenizeStats(), [], []
    for index, example in enumerate(chunk):
        if "messages" in example:
            found = conversation_rows(subject.tokenizer, example, max_length, stats)
        else:
            found = [r for r in tokenize_text(subject.tokenizer, example, max_length, stats) if r]
        rows += found
        where += [index] * len(found)
    if not rows:
        return
    pad = pad_id(subject.tokenizer)
    per_example: dict[int, list[float]] = {}
    for index, (nll, count) in zip(where, subject.nll(pad_batch(rows, pad))):
        total = per_example.setdefault(index, [0.0, 0])
        total[0], total[1] = total[0] + nll, total[1] + count
    for index, (nll, count) in per_example.items():
        side.nll, side.tokens = side.nll + nll, side.tokens + count
        if count:
            lines[index].setdefault(f"{prefix}scores", {})["answer_loss"] = nll / count


def _record(tuned: Side, base: Side | None, settings: EvalSettings, about: dict, count: int, seconds: float) -> dict:
    metrics = tuned.metrics(settings.metrics)
    record = {**about, "metrics": metrics, "examples": count, "perplexity_tokens": tuned.tokens,
              "settings": {"metrics": settings.metrics, "max_new_tokens": settings.max_new_tokens,
                           "batch_size": settings.batch_size, "max_length": settings.max_length,
                           "compare_base": settings.compare_base, "limit": settings.limit},
              "seconds": round(seconds, 2)}
    if "bleu" in settings.metrics and tuned.scored:
        record["bleu_signature"] = corpus_bleu([s.prediction for s in tuned.scored],
                                               [s.reference for s in tuned.scored])[1]
    if base is not None:
        record["base_metrics"] = base.metrics(settings.metrics)
        record["delta"] = {key: metrics[key] - value for key, value in record["base_metrics"].items() if key in metrics}
    return record


PROBES, PROBE_METRICS = "builtin:probes", ["contains", "perplexity"]


def evaluate_data(subject: Subject, data: str, dataset: str | None, settings: EvalSettings, output: Path) -> dict:
    """Load `data` the way training does and evaluate on it."""
    from tunelab.data.loading import load_examples

    examples = load_examples(data, dataset)
    about = {"model": _model_name(subject), "data": data, "dataset": dataset,
             "dtype": dtype_name(subject.loaded.dtype)}
    return evaluate(subject, examples, settings, output, about)


def evaluate_forgetting(subject: Subject, settings: EvalSettings, output: Path) -> dict:
    """The general-knowledge probes on base and tuned model: a drop in `contains` is what the fine-tune forgot.
    The record (and eval.json) also names the questions under `changes`: kept, lost, gained, never; and under
    `base_gaps` how firmly the base answered each question it got right (tunelab.eval.firmness)."""
    probe_settings = EvalSettings(PROBE_METRICS, settings.max_new_tokens, settings.batch_size, compare_base=True,
                                  max_length=settings.max_length)
    record = evaluate_data(subject, PROBES, None, probe_settings, output)
    record["changes"], record["base_gaps"] = moved_of(output)  # read back: predictions.jsonl is written batch by batch
    write_result(output, record)
    return record


def _model_name(subject: Subject) -> str:
    run = subject.loaded.run
    return str(run.weights) if run else subject.loaded.base.name
