"""`data:` section — which examples to train on and how to render them."""
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tunelab.config.base import ADVANCED, CACHE_KEY, FORM, FREE, Section


def known_format(value: str | None) -> str | None:
    from tunelab.data import formats  # the format registry is the single source of valid names
    from tunelab.errors import TunelabError

    try:
        return None if value is None else formats.check_format(value)
    except TunelabError as exc:
        raise ValueError(str(exc)) from None


def hub_keys_problem(path: str | None, split: str, subset: str | None, where: str) -> str | None:
    """split and subset choose inside a hub data set; with any other path they would be silently ignored."""
    from tunelab.data.hub import HUB_PREFIX

    given = [key for key, set_ in (("split", split != "train"), ("subset", subset is not None)) if set_]
    if given and not (path or "").startswith(HUB_PREFIX):
        return f"{where}.{given[0]} only applies to a hub data set ({where}.path: {HUB_PREFIX}ORG/NAME)"
    return None


class MixSource(Section):
    """One source of `data.mix`, read as `data.path` reads it; drawn with probability weight / sum of weights."""
    path: str = Field(..., description="Data file, LLaMA-Factory data dir, builtin:NAME or hf:ORG/NAME.")
    dataset: str | None = Field(None, description="Dataset name(s) in the dir's dataset_info.json, comma-separated.")
    format: str | None = Field(None, description="Record format; auto-detected when omitted.")
    split: str = Field("train", description="hf: sources: the split to load.")
    subset: str | None = Field(None, description="hf: sources: the configuration (subset) to load.")
    weight: float = Field(1.0, gt=0, description="Share of the draws; the weights are normalised to sum to 1.")

    @model_validator(mode="before")
    @classmethod
    def _a_path_alone(cls, data):
        """`mix: [a.jsonl, b.jsonl]`: a source written as its path alone has weight 1."""
        return {"path": data} if isinstance(data, str) else data

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        return known_format(value)

    @model_validator(mode="after")
    def _hub_keys_for_hub_paths(self) -> "MixSource":
        problem = hub_keys_problem(self.path, self.split, self.subset, "data.mix[]")
        if problem:
            raise ValueError(problem)
        return self

    @property
    def label(self) -> str:
        """How logs and summary.json name the source."""
        return f"{self.path} [{self.dataset}]" if self.dataset else self.path


class DataConfig(Section):
    path: str | None = Field(None, json_schema_extra=CACHE_KEY, description="Data file, LLaMA-Factory data dir "
                             "(dataset_info.json), builtin:NAME or hf:ORG/NAME (a Hugging Face Hub data set); "
                             "required unless data.mix is given.")
    dataset: str | None = Field(None, json_schema_extra=CACHE_KEY, description="Dataset name(s) in dataset_info.json, comma-separated.")
    format: str | None = Field(
        None, json_schema_extra={**CACHE_KEY, **ADVANCED}, description="Record format (alpaca, sharegpt, messages, text, classification, preference, kto, prompt); "
        "auto-detected when omitted."
    )
    split: str = Field("train", json_schema_extra=CACHE_KEY, description="hf: data sets: the split to load.")
    subset: str | None = Field(None, json_schema_extra=CACHE_KEY, description="hf: data sets: the configuration "
                               "(subset) to load.")
    mix: list[MixSource] = Field(default_factory=list, description="Several sources instead of data.path, each "
                                 "drawn by its weight (docs/data.md, \"Mixing data sets\").")
    mix_size: int | None = Field(None, gt=0, description="data.mix: examples drawn per epoch (data.mix_stop: size); "
                                 "default the sum of the sources' training examples.")
    mix_stop: Literal["size", "first_exhausted", "all_exhausted", "concat"] = Field(
        "size", description="data.mix: stop drawing after data.mix_size examples, when a source first runs out "
        "(LLaMA-Factory interleave_under), or when every source has run out once (interleave_over); concat: every "
        "example of every source once, no weights.")
    template: str | None = Field(None, json_schema_extra=ADVANCED, description="Chat template name; default: the tokenizer's own.")
    prefer_tokenizer_template: bool = Field(
        False, description="With data.template: use the tokenizer's own chat template instead when the tokenizer is "
        "of that family (how configs translated from LLaMA-Factory/axolotl name the model's own format).")
    train_on: Literal["all", "last"] = Field(
        "all", json_schema_extra=CACHE_KEY, description="Assistant turns with loss: every one, or only the last of "
        "each conversation (the earlier ones stay as context).")
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
    shuffle_seed: int | None = Field(None, description="Seed of the train/val split and of the data.mix draw; "
                                     "default train.seed.")
    streaming: bool = Field(False, description="Read, convert and tokenize a .jsonl/.txt file lazily (files "
                            "larger than RAM); needs train.max_steps.")
    cache: bool = Field(True, json_schema_extra=FREE, description="Keep tokenized data in TUNELAB_CACHE, keyed by data hash, tokenizer, "
                        "template and max_length, so the next run skips tokenization.")

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        return known_format(value)

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

    @model_validator(mode="after")
    def _one_source(self) -> "DataConfig":
        if self.path is None and not self.mix:
            raise ValueError("data.path: required key is missing (or give data.mix: several sources with weights)")
        if self.path is not None and self.mix:
            raise ValueError("data.path and data.mix: give one of them (data.path for one source, data.mix for "
                             "several, each with its own path)")
        return self

    @model_validator(mode="after")
    def _mix_keys_with_a_mix(self) -> "DataConfig":
        problem = self._mix_problem() if self.mix else self._lone_mix_key()
        if problem:
            raise ValueError(problem)
        return self

    def _mix_problem(self) -> str | None:
        """What a mixture cannot take: the single source's keys (each source has its own), a stream."""
        shared = next((key for key in ("dataset", "format", "subset") if getattr(self, key) is not None), None)
        if shared or self.split != "train":
            return f"data.{shared or 'split'}: with data.mix give it to each source (data.mix[].{shared or 'split'})"
        if self.streaming:
            return "data.streaming: a data.mix is drawn from examples in memory; set data.streaming: false"
        if self.mix_size is not None and self.mix_stop != "size":
            return (f"data.mix_size: data.mix_stop {self.mix_stop!r} decides when drawing stops; set data.mix_size "
                    "only with data.mix_stop: size")
        if self.mix_stop == "concat" and any(source.weight != 1 for source in self.mix):
            return "data.mix[].weight: data.mix_stop concat takes every example once, so weights do not apply"
        return None

    def _lone_mix_key(self) -> str | None:
        if self.mix_size is not None or self.mix_stop != "size":
            key = "mix_size" if self.mix_size is not None else "mix_stop"
            return f"data.{key} only applies to a data.mix (several sources with weights)"
        return hub_keys_problem(self.path, self.split, self.subset, "data")

    @property
    def label(self) -> str:
        """How messages and provenance name the data: data.path, or the data.mix sources."""
        return self.path if not self.mix else "data.mix (" + ", ".join(source.label for source in self.mix) + ")"

    def sources(self) -> list[MixSource]:
        """The sources to read: data.mix, or data.path as the one source (weight 1)."""
        if self.mix:
            return list(self.mix)
        return [MixSource(path=self.path, dataset=self.dataset, format=self.format, split=self.split,
                          subset=self.subset)]
