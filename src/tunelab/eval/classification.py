"""Accuracy and macro-F1 of a classification run on labelled texts (the `classification` data format)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tunelab.errors import TunelabError
from tunelab.eval.output import EvalWriter
from tunelab.serve.classifier import Classifier
from tunelab.stages.classify import macro_f1


def evaluate_classifier(subject, examples: list[dict], settings, output: Path, about: dict) -> dict:
    if settings.compare_base:
        raise TunelabError("--compare-base: a classifier's base has an untrained head; there is nothing to compare")
    unknown = [name for name in settings.metrics if name not in ("accuracy", "f1")]
    if unknown:
        raise TunelabError(f"--metrics: {', '.join(unknown)} cannot be combined with accuracy/f1 (a classifier "
                           "generates no text)")
    classifier = Classifier(subject.loaded, subject.device, settings.max_length)
    started, predicted, gold = time.perf_counter(), [], []
    with EvalWriter(output) as writer:
        for start in tqdm(range(0, len(examples), settings.batch_size), desc="eval", unit="batch"):
            chunk = examples[start : start + settings.batch_size]
            gold += [_label_id(example, classifier.labels) for example in chunk]
            results = classifier.predict([e["text"] for e in chunk], [e.get("text_pair") for e in chunk])
            predicted += [classifier.labels.index(result["label"]) for result in results]
            writer.predictions([{"source": e.get("source"), "input": e["text"], "reference": str(e["label"]),
                                 "prediction": r["label"], "probabilities": r["probabilities"]}
                                for e, r in zip(chunk, results)])
        predictions, labels = np.array(predicted), np.array(gold)
        metrics = {"accuracy": float(np.mean(predictions == labels)),
                   "f1": macro_f1(predictions, labels, len(classifier.labels))}
        record = {**about, "metrics": {k: v for k, v in metrics.items() if k in settings.metrics},
                  "examples": len(examples), "labels": classifier.labels,
                  "settings": {"metrics": settings.metrics, "batch_size": settings.batch_size},
                  "seconds": round(time.perf_counter() - started, 2)}
        writer.result(record)
    return record


def _label_id(example: dict, labels: list[str]) -> int:
    if "label" not in example:
        raise TunelabError(f"{example.get('source')}: accuracy/f1 need labelled texts (text + label)")
    name = str(example["label"])
    if name not in labels:
        raise TunelabError(f"{example.get('source')}: label {name!r} is not one the classifier knows "
                           f"({', '.join(labels)})")
    return labels.index(name)
