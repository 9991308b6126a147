"""Classification data: `{"text", "label"}` records (optionally `text_pair`), e.g. SST-2 style sentiment.

Canonical form: {"text": str, "text_pair": str | None, "label": str | int, "source": "file:LINE"}.
GLUE-style `sentence` is accepted for `text`. Labels stay as written; the classify stage maps them
to ids (sorted, saved with the run).
"""
from __future__ import annotations

from tunelab.data.formats import Record, Spec, register_format
from tunelab.errors import TunelabError

SPEC: Spec = {"text": "text", "text_pair": "text_pair", "label": "label"}


def convert_classification(record: Record, source: str, spec: Spec) -> dict:
    column = spec["text"] if spec["text"] in record else "sentence"
    text = record.get(column)
    if not isinstance(text, str) or not text.strip():
        raise TunelabError(f"{source}: field '{spec['text']}' must be non-empty text (classification format "
                           f"expects {spec['text']}, {spec['label']} and optionally {spec['text_pair']})")
    label = record.get(spec["label"])
    if isinstance(label, bool) or not isinstance(label, (str, int)) or label == "":
        raise TunelabError(f"{source}: field '{spec['label']}' must be a class name or an integer, got {label!r}")
    pair = record.get(spec["text_pair"])
    if pair is not None and not isinstance(pair, str):
        raise TunelabError(f"{source}: field '{spec['text_pair']}' must be text, got {type(pair).__name__}")
    return {"text": text, "text_pair": pair or None, "label": label, "source": source}


register_format("classification", convert_classification, SPEC, ("text", "label"), ("sentence", "label"))
