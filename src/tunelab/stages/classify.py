"""Sequence classification: a classification head on any causal or encoder model, trained with
cross-entropy on `{"text", "label"}` examples (optionally `text_pair`).

Labels are mapped to ids in sorted order and saved with the run (`labels.json` beside the weights and
`id2label` in the model config), so `tunelab predict` answers with the names it was trained on. The
head trains with every method that can train a whole module (peft keeps it as a saved module).
Validation: accuracy and macro-F1 on a held-out 10% unless data.val_size says otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from transformers import DataCollatorWithPadding

from tunelab.data.tokenize import TokenizeStats
from tunelab.errors import TunelabError
from tunelab.stages.base import Stage, register

LABELS_FILE = "labels.json"


def macro_f1(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    """Mean of per-class F1 over the classes present in labels or predictions (scikit-learn's
    'macro' average); a few lines here rather than a scikit-learn dependency for one metric."""
    scores = []
    for cls in range(num_labels):
        tp = np.sum((predictions == cls) & (labels == cls))
        fp = np.sum((predictions == cls) & (labels != cls))
        fn = np.sum((predictions != cls) & (labels == cls))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def read_labels(folder: Path) -> list:
    """The label names of RUN/model, or of a checkpoint-N (kept at the top of its run)."""
    for where in (Path(folder), Path(folder).parent):
        if (where / LABELS_FILE).is_file():
            return json.loads((where / LABELS_FILE).read_text(encoding="utf-8"))
    raise TunelabError(f"{folder}: no {LABELS_FILE}; this run was not trained with train.stage classify")


@register("classify")
class ClassifyStage(Stage):
    def __init__(self, config):
        super().__init__(config)
        self.labels: list = []

    def check_examples(self, examples: list[dict]) -> None:
        super().check_examples(examples)
        for example in examples:
            if "text" not in example:  # KTO data also has labels
                raise TunelabError(f"{example['source']}: train.stage 'classify' needs {self.wants}, "
                                   f"got {sorted(k for k in example if k != 'source')}")
        kinds = {type(example["label"]) for example in examples}
        if len(kinds) > 1:
            raise TunelabError(f"{self.config.data.label}: labels mix numbers and names; use one kind")
        self.labels = sorted({example["label"] for example in examples})
        if len(self.labels) < 2:
            raise TunelabError(f"{self.config.data.label}: classification needs at least two labels, "
                               f"found {self.labels}")

    def model_kwargs(self) -> dict:
        names = [str(label) for label in self.labels]
        return {"num_labels": len(names), "id2label": dict(enumerate(names)),
                "label2id": {name: i for i, name in enumerate(names)}}

    def tokenize(self, examples, tokenizer):
        stats, rows = TokenizeStats(), []
        index = {label: i for i, label in enumerate(self.labels)}
        max_length = self.config.train.max_length
        for example in examples:
            encoded = tokenizer(example["text"], example.get("text_pair"))
            if len(encoded["input_ids"]) > max_length:  # only long texts pay a second, truncating pass
                stats.truncated += 1
                encoded = tokenizer(example["text"], example.get("text_pair"), truncation=True, max_length=max_length)
            stats.kept += 1
            stats.tokens += len(encoded["input_ids"])
            rows.append({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                         "labels": index[example["label"]]})
        return rows, stats

    def collator(self, tokenizer, packing: bool):
        return DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def compute_metrics(self, prediction) -> dict:
        predicted = np.argmax(prediction.predictions, axis=-1)
        labels = np.asarray(prediction.label_ids)
        return {"accuracy": float(np.mean(predicted == labels)),
                "f1": macro_f1(predicted, labels, len(self.labels))}

    def save(self, out_dir: Path) -> None:
        (Path(out_dir) / LABELS_FILE).write_text(json.dumps(self.labels, ensure_ascii=False) + "\n", encoding="utf-8")

    def load_saved(self, weights_dir: Path) -> None:
        self.labels = read_labels(weights_dir)
