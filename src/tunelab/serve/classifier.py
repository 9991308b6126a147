"""Batched prediction with a classification run: label names and probabilities per text."""
from __future__ import annotations

import torch

from tunelab.errors import TunelabError
from tunelab.runs.loading import LoadedModel


class Classifier:
    def __init__(self, loaded: LoadedModel, device: str = "cpu", max_length: int = 1024):
        labels = getattr(loaded.model.config, "id2label", None)
        if not type(_inner(loaded.model)).__name__.endswith("ForSequenceClassification") or not labels:
            raise TunelabError("--model: not a classification run (train it with train.stage classify)")
        self.model = loaded.model.to(device).eval()
        self.tokenizer = loaded.tokenizer
        self.labels = [labels[i] for i in range(len(labels))]
        self.device = device
        self.max_length = max_length

    @torch.inference_mode()
    def predict(self, texts: list[str], pairs: list[str | None] | None = None) -> list[dict]:
        pairs = pairs if pairs and any(pairs) else None
        self.tokenizer.padding_side = "right"
        batch = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length, padding=True,
                               return_tensors="pt").to(self.device)
        probs = torch.softmax(self.model(**batch).logits.float(), dim=-1)
        return [{"label": self.labels[int(row.argmax())],
                 "probabilities": {name: round(float(p), 6) for name, p in zip(self.labels, row)}} for row in probs]


def _inner(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model
