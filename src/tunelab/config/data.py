"""`data:` section — which examples to train on and how to render them."""
from typing import Literal

from pydantic import Field, field_validator

from tunelab.config.base import ADVANCED, CACHE_KEY, FORM, FREE, Section


class DataConfig(Section):
    path: str = Field(..., json_schema_extra=CACHE_KEY, description="Data file, LLaMA-Factory data dir (dataset_info.json) or builtin:NAME.")
    dataset: str | None = Field(None, json_schema_extra=CACHE_KEY, description="Dataset name(s) in dataset_info.json, comma-separated.")
    format: str | None = Field(
        None, json_schema_extra={**CACHE_KEY, **ADVANCED}, description="Record format (alpaca, sharegpt, messages, text, classification, preference, kto, prompt); "
        "auto-detected when omitted."
    )
    template: str | None = Field(None, json_schema_extra=ADVANCED, description="Chat template name; default: the tokenizer's own.")
    thinking: Literal["keep", "drop"] = Field(
        "keep", json_schema_extra=CACHE_KEY, description="Reasoning in the data (assistant reasoning_content, or a <think> block opening the "
        "answer): keep it, or drop it from every answer.")
    train_thinking: bool = Field(True, json_schema_extra=CACHE_KEY, description="Loss on the reasoning too (false: it stays as context, only the "
                                 "answer is trained). An empty think block is not trained (but for DeepSeek-R1: its prompt opens a block "
                                 "nothing else closes).")
    enable_thinking: bool | None = Field(
        None, description="The template's enable_thinking switch (Qwen3 and others), saved with the run so inference "
        "renders prompts as training did; default: on when reasoning is kept and the data has some.")
    strict_template: bool = Field(False, description="Template lint findings (docs/models.md) stop training "
                                  "instead of warning (`tunelab train --strict`).")
    val_size: float = Field(0.0, ge=0, json_schema_extra=FORM, description="Fraction (<1) or count (>=1) held out for evaluation.")
    shuffle_seed: int | None = Field(None, description="Seed of the train/val split; default train.seed.")
    streaming: bool = Field(False, description="Read, convert and tokenize a .jsonl/.txt file lazily (files "
                            "larger than RAM); needs train.max_steps.")
    cache: bool = Field(True, json_schema_extra=FREE, description="Keep tokenized data in TUNELAB_CACHE, keyed by data hash, tokenizer, "
                        "template and max_length, so the next run skips tokenization.")

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        from tunelab.data import formats  # the format registry is the single source of valid names
        from tunelab.errors import TunelabError

        try:
            return None if value is None else formats.check_format(value)
        except TunelabError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str | None) -> str | None:
        from tunelab.data.templates import check_template  # the template table is the single source of names
        from tunelab.errors import TunelabError

        try:
            return None if value is None else check_template(value)
        except TunelabError as exc:
            raise ValueError(str(exc).removeprefix("data.template: ")) from None

    @field_validator("val_size")
    @classmethod
    def _count_is_whole(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError("must be a fraction below 1 or a whole count of examples")
        return value
