"""What training will see: examples, token lengths, and which tokens train.

Everything here goes through the same functions `tunelab train` calls — `load_examples`, the stage's
`check_examples` and `tokenize_example`, the tokenizer with the template in force — so what `tunelab data
inspect` shows is what the stage trains on, not a re-implementation of it.
"""
from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from tunelab.config import RunConfig, load_config, validate
from tunelab.data.loading import load_examples, load_sources
from tunelab.data.records import KINDS, duplicate_key, has_empty_answer, kind_of, source_file
from tunelab.data.reasoning import REASONING, thinking_default
from tunelab.data.templates import choose_template, template_support
from tunelab.data.tools import uses_tools
from tunelab.training.template import set_thinking
from tunelab.data.tokenize import IGNORE, TRAIN_ON, TokenizeStats
from tunelab.errors import TunelabError
from tunelab.models import ResolvedModel, load_tokenizer, resolve_model
from tunelab.models.tokens import add_to_tokenizer, missing_tokens, model_type_of
from tunelab.runs import find_run
from tunelab.runs.loading import resolve_base
from tunelab.stages import STAGES, Stage, get_stage

CONFIG_SUFFIXES = (".yaml", ".yml")
UNBOUNDED = 2**31 - 1  # a max_length nothing reaches: the stage's rows before any cut


@dataclass
class DataView:
    """Examples together with the stage and tokenizer that turn them into training rows."""
    config: RunConfig
    examples: list[dict]
    stage: Stage
    tokenizer: object


@dataclass
class InspectReport:
    examples: int
    kinds: Counter            # canonical kind (records.KINDS key) -> examples
    files: Counter            # source file -> examples
    lengths: list[int]        # tokens per example before any cut (template and EOS included)
    max_length: int
    stats: TokenizeStats      # the stage's own counts at max_length
    # Sources of examples that are the same up to whitespace: the rule `clean` removes duplicates by.
    duplicates: list[list[str]] = field(default_factory=list)
    empty_answers: list[str] = field(default_factory=list)      # sources with a blank assistant turn
    reasoning_answers: int = 0   # assistant turns carrying reasoning (tunelab.data.reasoning)
    tool_examples: int = 0       # conversations with tools, tool calls or tool results
    tools_native: bool = False   # the template renders tools itself (else text tags)
    enable_thinking: bool | None = None  # the template's thinking switch as set for training

    @property
    def truncation_rate(self) -> float:
        return self.stats.truncated / max(self.examples, 1)

    @property
    def duplicate_count(self) -> int:
        """Examples that repeat an earlier one (each group's first copy is not counted)."""
        return sum(len(group) - 1 for group in self.duplicates)

    def to_dict(self) -> dict:
        lengths = self.lengths or [0]
        return {
            "examples": self.examples, "kinds": dict(self.kinds), "files": dict(self.files),
            "lengths": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths),
                        "mean": statistics.fmean(lengths)},
            "max_length": self.max_length, "truncated": self.stats.truncated, "dropped": self.stats.dropped,
            "dropped_sources": self.stats.dropped_sources, "tokens": self.stats.tokens,
            "trained_tokens": self.stats.trained_tokens, "duplicates": self.duplicates,
            "empty_answers": self.empty_answers, "reasoning_answers": self.reasoning_answers,
            "tool_examples": self.tool_examples, "tools_native": self.tools_native,
            "enable_thinking": self.enable_thinking,
        }


# ---- config and data -> a view -------------------------------------------------------------------


def is_config(target: str) -> bool:
    return Path(target).suffix.lower() in CONFIG_SUFFIXES


def open_view(target: str, model: str | None = None, max_length: int | None = None,
              dataset: str | None = None, format: str | None = None) -> DataView:
    """A run config (its data, model, template, stage and max_length; `model`/`max_length` override them) or
    a data file, directory or builtin:NAME (then the default model and max_length unless given)."""
    if is_config(target):
        overrides = [f"model.path={json.dumps(model)}"] if model else []  # a JSON string is a YAML string
        overrides += [f"train.max_length={max_length}"] if max_length else []
        config = load_config(target, overrides)
        examples = [TRAIN_ON[config.data.train_on](example)  # what training reads: every source, train_on applied
                    for group in load_sources(config.data, config.train.max_samples) for example in group]
    else:
        examples = load_examples(target, dataset, format)
        config = data_config(target, examples, model, max_length, dataset, format)
    return view_of(config, examples)


def data_config(path: str, examples: list[dict], model: str | None = None, max_length: int | None = None,
                dataset: str | None = None, format: str | None = None) -> RunConfig:
    """The config `tunelab train` would run on this data with default settings (and these options)."""
    train = {"stage": stage_for(examples, path), **({"max_length": max_length} if max_length else {})}
    model_section = {"path": model} if model else {}
    data = {"path": path, "dataset": dataset, "format": format}
    return validate({"model": model_section, "data": data, "train": train}, source="command line")


def view_of(config: RunConfig, examples: list[dict]) -> DataView:
    stage = get_stage(config)
    if not makes_rows_per_example(type(stage)):
        raise TunelabError(f"{config.data.label}: train.stage {stage.name!r} tokenizes inside its trainer, so "
                           f"`tunelab data inspect` cannot show its tokens (it can for: {', '.join(_shown_stages())})")
    stage.check_examples(examples)
    tokenizer = data_tokenizer(config)
    if stage.uses_template:
        set_thinking(config.data, tokenizer, examples)
    return DataView(config, examples, stage, tokenizer)


def makes_rows_per_example(stage_class: type[Stage]) -> bool:
    """Stages that tokenize one example at a time (`tokenize_example`) can show each example's rows; the
    others hand whole datasets to their trainers."""
    return stage_class.tokenize_example is not Stage.tokenize_example


def _shown_stages() -> list[str]:
    return [name for name, cls in STAGES.items() if makes_rows_per_example(cls)]


def stage_for(examples: list[dict], path: str) -> str:
    """The stage that trains this kind of example one row at a time (sft for conversations, pretrain for
    text); other kinds are tokenized by their trainers and have no rows to show."""
    kind = kind_of(examples[0])
    for name, cls in STAGES.items():
        if cls.example_kind == kind and makes_rows_per_example(cls):
            return name
    raise TunelabError(f"{path}: these examples are {KINDS.get(kind, kind)}; `tunelab data` shows and measures "
                       f"the data of {', '.join(_shown_stages())} (conversations or plain text)")


def data_tokenizer(config: RunConfig):
    """The tokenizer training would use, with the template in force (a run's own when the model is a run)."""
    ref = find_run(config.model.path)
    if ref is not None:  # training from a run starts from the tokenizer saved with its weights
        weights = str(ref.weights)
        resolved = ResolvedModel(weights, weights, "hf_dir")
        model_type = model_type_of(resolve_base(ref))
    else:
        resolved = resolve_model(config.model.path, config.model.gguf_file)
        model_type = model_type_of(resolved)
    tokenizer = load_tokenizer(resolved, config.model)
    choice = choose_template(tokenizer, config.data.template, model_type,
                             config.data.prefer_tokenizer_template)
    tokenizer.chat_template = choice.template
    if choice.template and choice.source != "tokenizer":  # the tokens training would add (tunelab.models.tokens)
        add_to_tokenizer(tokenizer, missing_tokens(tokenizer, choice.family.special_tokens))
    return tokenizer


# ---- measuring ---------------------------------------------------------------------------------


class FullLength:
    """Tokens of an example before any cut, measured by the stage itself at a max_length nothing reaches."""

    def __init__(self, view: DataView):
        config = view.config.model_copy(deep=True)
        config.train.max_length = UNBOUNDED
        self.stage, self.tokenizer = get_stage(config), view.tokenizer

    def __call__(self, example: dict) -> int:
        rows = self.stage.tokenize_example(example, self.tokenizer, TokenizeStats())
        return sum(len(row["input_ids"]) for row in rows)


def inspect_view(view: DataView, progress: bool = True) -> InspectReport:
    """Counts, lengths, the stage's truncation at max_length, duplicates and empty answers."""
    stats, lengths, copies = TokenizeStats(), [], {}
    full_length = FullLength(view)
    for example in tqdm(view.examples, desc="inspect", unit="ex", leave=False, disable=not progress):
        view.stage.tokenize_example(example, view.tokenizer, stats)
        lengths.append(full_length(example))
        copies.setdefault(duplicate_key(example), []).append(_source(example))
    return InspectReport(
        examples=len(view.examples),
        kinds=Counter(kind_of(example) for example in view.examples),
        files=Counter(source_file(_source(example)) for example in view.examples),
        lengths=lengths, max_length=view.config.train.max_length, stats=stats,
        duplicates=[group for group in copies.values() if len(group) > 1],
        empty_answers=[_source(example) for example in view.examples if has_empty_answer(example)],
        **_reasoning_and_tools(view),
    )


def _reasoning_and_tools(view: DataView) -> dict:
    conversations = [example for example in view.examples if isinstance(example.get("messages"), list)]
    tools = sum(bool(example.get("tools")) or uses_tools(example["messages"]) for example in conversations)
    template = view.tokenizer.chat_template
    return {"reasoning_answers": sum(bool(message.get(REASONING)) for example in conversations
                                     for message in example["messages"]),
            "tool_examples": tools, "tools_native": bool(tools and template and template_support(view.tokenizer).tools),
            "enable_thinking": thinking_default(template)}


def _source(example: dict) -> str:
    return example.get("source", "?")


# ---- which tokens train --------------------------------------------------------------------------


@dataclass
class Shown:
    """One example as the stage tokenizes it, in trained / masked pieces of text."""
    source: str
    segments: list[tuple[str, bool]]
    note: str = ""


def show_examples(view: DataView, count: int) -> list[Shown]:
    """The first `count` examples' first training rows (what the model reads, and which tokens train)."""
    shown = []
    for example in view.examples[:count]:
        stats = TokenizeStats()
        rows = view.stage.tokenize_example(example, view.tokenizer, stats)
        if not rows:
            shown.append(Shown(_source(example), [], "dropped: nothing left to train within max_length"))
            continue
        notes = [f"cut to {len(rows[0]['input_ids'])} tokens (max_length)"] if stats.truncated else []
        notes += [f"{len(rows) - 1} more row(s) not shown"] if len(rows) > 1 else []
        segments = render_marked(view.tokenizer, rows[0]["input_ids"], rows[0]["labels"])
        shown.append(Shown(_source(example), segments, "; ".join(notes)))
    return shown


def render_marked(tokenizer, input_ids: list[int], labels: list[int]) -> list[tuple[str, bool]]:
    """The text of `input_ids` as (text, trained) pieces, one per run of tokens whose label is / is not set.

    Each piece is the growth of the decoded prefix, so joined pieces are exactly the decoded row (decoding
    pieces on their own can drop the leading space of SentencePiece tokens) and a piece is marked trained
    exactly when its tokens carry labels.
    """
    segments, shown, start = [], "", 0
    flags = [label != IGNORE for label in labels]
    for trained, run in itertools.groupby(flags):
        end = start + len(list(run))
        text = _decode(tokenizer, input_ids[:end])
        piece = text[len(shown):] if text.startswith(shown) else _decode(tokenizer, input_ids[start:end])
        segments.append((piece, trained))
        shown, start = text, end
    return segments


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
