"""Text metrics for generated answers, by name: each gives a per-example score (for predictions.jsonl
and error analysis) and a corpus score (for eval.json).

BLEU is sacrebleu's corpus BLEU (0-100) — the corpus number is not the mean of sentence scores, so it
is computed from all predictions at the end (strings only; no tensors are kept). ROUGE is rouge-score's
F-measure x 100; its tokenizer keeps only [a-z0-9], which would erase Chinese, so text with CJK
characters is segmented with jieba first. Exact match and `contains` compare normalised text.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from tunelab.errors import TunelabError

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def has_cjk(texts: list[str]) -> bool:
    return any(CJK.search(text) for text in texts)


def normalize(text: str) -> str:
    """SQuAD-style: lower case, no punctuation (ASCII or CJK), no English articles, single spaces."""
    text = text.lower()
    text = "".join(" " if ch in string.punctuation or ch in "，。！？；：、“”‘’（）《》" else ch for ch in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


@dataclass
class Scored:
    """What a metric needs about one example: the prediction, the reference and any accepted answers."""
    prediction: str
    reference: str
    accepted: list[str]


# ---- BLEU ---------------------------------------------------------------------------------------


def bleu_tokenize(references: list[str]) -> str:
    """sacrebleu's own tokenizer for Chinese when the references hold CJK, else its default (13a)."""
    return "zh" if has_cjk(references) else "13a"


def corpus_bleu(predictions: list[str], references: list[str]) -> tuple[float, str]:
    """(score, sacrebleu signature)."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=bleu_tokenize(references))
    return metric.corpus_score(predictions, [references]).score, str(metric.get_signature())


def sentence_bleu(example: Scored) -> float:
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=bleu_tokenize([example.reference]), effective_order=True)
    return metric.sentence_score(example.prediction, [example.reference]).score


# ---- ROUGE --------------------------------------------------------------------------------------

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


class JiebaTokenizer:
    """rouge-score tokenizer for text with Chinese: jieba words, lower-cased, punctuation and spaces dropped."""

    def tokenize(self, text: str) -> list[str]:
        import jieba

        jieba.setLogLevel(60)  # jieba logs its dictionary loading at INFO
        return [word.lower() for word in jieba.lcut(normalize(text)) if word.strip()]


@lru_cache(maxsize=2)
def _rouge_scorer(chinese: bool):
    from rouge_score import rouge_scorer, tokenizers

    tokenizer = JiebaTokenizer() if chinese else tokenizers.DefaultTokenizer(use_stemmer=False)
    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), tokenizer=tokenizer)


def rouge_scores(example: Scored) -> dict[str, float]:
    scorer = _rouge_scorer(has_cjk([example.reference, example.prediction]))
    scores = scorer.score(example.reference, example.prediction)
    return {key: 100 * scores[key].fmeasure for key in ROUGE_KEYS}


# ---- registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextMetric:
    """A metric over generated text: `per_example` returns {column: score}; `corpus` the eval.json numbers
    from the per-example scores and the strings (None: the mean of each per-example column)."""
    keys: tuple[str, ...]
    per_example: Callable[[Scored], dict[str, float]]
    corpus: Callable[[list[Scored], list[dict]], dict[str, float]] | None = None


def _mean_of(rows: list[dict], key: str) -> float:
    return sum(row[key] for row in rows) / len(rows) if rows else 0.0


def _bleu_corpus(examples: list[Scored], _rows: list[dict]) -> dict[str, float]:
    score, _ = corpus_bleu([e.prediction for e in examples], [e.reference for e in examples])
    return {"bleu": score}


def _exact(example: Scored) -> dict[str, float]:
    answers = [example.reference, *example.accepted]
    return {"exact_match": 100.0 * any(normalize(example.prediction) == normalize(a) for a in answers if a)}


def _contains(example: Scored) -> dict[str, float]:
    """Probe sets: correct when any accepted answer appears in the prediction (the reference when none given)."""
    answers = example.accepted or [example.reference]
    found = any(normalize(a) and normalize(a) in normalize(example.prediction) for a in answers)
    return {"contains": 100.0 * found}


TEXT_METRICS: dict[str, TextMetric] = {
    "bleu": TextMetric(("bleu",), lambda e: {"bleu": sentence_bleu(e)}, _bleu_corpus),
    "rouge": TextMetric(ROUGE_KEYS, rouge_scores),
    "exact_match": TextMetric(("exact_match",), _exact),
    "contains": TextMetric(("contains",), _contains),
}
LOSS_METRICS = ("perplexity",)             # from the model's loss on the reference, no generation
LABEL_METRICS = ("accuracy", "f1")         # classification runs: predicted label vs gold label
ALL_METRICS = (*TEXT_METRICS, *LOSS_METRICS, *LABEL_METRICS)


def check_metrics(names: list[str], where: str = "--metrics") -> list[str]:
    unknown = [name for name in names if name not in ALL_METRICS]
    if unknown or not names:
        raise TunelabError(f"{where}: unknown metric {', '.join(map(repr, unknown)) or '(none given)'} "
                           f"(choose from {', '.join(ALL_METRICS)})")
    return names


def score_example(example: Scored, names: list[str]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for name in names:
        if name in TEXT_METRICS:
            scores.update(TEXT_METRICS[name].per_example(example))
    return scores


def corpus_scores(examples: list[Scored], rows: list[dict], names: list[str]) -> dict[str, float]:
    """eval.json numbers from every example's strings and per-example scores."""
    result: dict[str, float] = {}
    for name in names:
        metric = TEXT_METRICS.get(name)
        if metric is None:
            continue
        if metric.corpus:
            result.update(metric.corpus(examples, rows))
        else:
            result.update({key: _mean_of(rows, key) for key in metric.keys})
    return result
