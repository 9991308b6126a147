"""Load what any `--model` value names: a run directory, one of its checkpoint-N, or a base model.

A run knows its base model and method, so users never repeat them. The adapter is applied onto the
base only if the base's fingerprint matches the one recorded at training time.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from tunelab.config.loader import validate
from tunelab.config.model import ModelConfig
from tunelab.config.run import RunConfig
from tunelab.errors import TunelabError
from tunelab.methods import Method, get_method
from tunelab.models import ResolvedModel, load_model, load_tokenizer, resolve_model
from tunelab.models.tokens import fit_vocab
from tunelab.runs.provenance import base_fingerprint
from tunelab.runs.rundir import RunDir


@dataclass
class RunRef:
    run: RunDir
    weights: Path          # RUN/model or RUN/checkpoint-N
    config: RunConfig


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    base: ResolvedModel
    method: Method | None = None   # set when `model` carries an adapter
    run: RunRef | None = None
    dtype: torch.dtype = torch.float32  # what it was loaded to compute in


def find_run(path: str) -> RunRef | None:
    """A run directory (weights in model/) or a checkpoint-N inside one; None for anything else."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return None
    if RunDir.is_run(folder):
        run, weights = RunDir(folder), folder / "model"
        if not weights.is_dir():
            raise TunelabError(f"{folder}: run has no model/ (status: {run.status()}); use one of its checkpoint-N")
    elif folder.name.startswith("checkpoint-") and RunDir.is_run(folder.parent):
        run, weights = RunDir(folder.parent), folder
    else:
        return None
    raw = yaml.safe_load(run.config.read_text(encoding="utf-8"))
    return RunRef(run, weights, validate(raw, source=str(run.config), written=False))


def resolve_base(ref: RunRef) -> ResolvedModel:
    """The base model at the root of the run's chain (a run may start from another run), checked against
    the fingerprint recorded when it trained."""
    parent = find_run(ref.config.model.path)
    if parent is not None:
        return resolve_base(parent)
    base = resolve_model(ref.config.model.path, ref.config.model.gguf_file)
    recorded = ref.run.read_json(ref.run.provenance_path).get("base_fingerprint")
    actual = base_fingerprint(base.location)
    if recorded and actual and recorded != actual:
        raise TunelabError(
            f"{ref.run.path}: its base model {base.name!r} ({base.location}) is not the one it was trained on "
            f"(fingerprint {actual} != recorded {recorded})"
        )
    return base


def load_run(ref: RunRef, dtype: torch.dtype, trainable: bool = False) -> LoadedModel:
    method = get_method(ref.config.method)
    base = resolve_base(ref)
    tokenizer = load_tokenizer(_local(ref.weights), ref.config.model)
    head = _head(ref)
    if not method.is_adapter:
        model = load_model(_local(ref.weights), ref.config.model, dtype, head=head["head"])
        return LoadedModel(model, tokenizer, base, None, ref, dtype)
    model = method.load(_start_model(ref, method, dtype, head, tokenizer), ref.weights, trainable=trainable)
    return LoadedModel(model, tokenizer, base, method, ref, dtype)


def _start_model(ref: RunRef, method, dtype: torch.dtype, head: dict, tokenizer) -> torch.nn.Module:
    """What the run's adapter was trained on: the base model, the same start as the run it continued, or the
    merged result of the run it started from (given the run's head when that run had another)."""
    parent = find_run(ref.config.model.path)
    if parent is None:  # grown to the run's tokenizer when tokens were added for its chat template
        base = method.load_base(resolve_base(ref), ref.config.model, dtype, **head)
        return with_pad(fit_vocab(base, tokenizer), tokenizer, head["head"])
    if continues(parent.config, ref.config):
        return _start_model(parent, method, dtype, head, tokenizer)  # it continued that adapter
    loaded = load_run(parent, dtype)
    merged = loaded.method.merge(loaded.model) if loaded.method else loaded.model
    from tunelab.stages import get_stage

    if get_stage(parent.config).head == head["head"]:
        return merged
    return reload_with_head(merged, lambda source: method.load_base(source, ref.config.model, dtype, **head),
                            tokenizer, head["head"])


def continues(previous: RunConfig, config: RunConfig) -> bool:
    """A run keeps training the previous run's weights only with the same method and stage; otherwise it starts
    from the previous result merged (so a DPO/PPO reference, the weights with the new adapter off, is that result)."""
    return previous.method.name == config.method.name and previous.train.stage == config.train.stage


def with_pad(model: torch.nn.Module, tokenizer, head: str) -> torch.nn.Module:
    """A classifier finds each example's last token by the pad id, so its config must know it."""
    if head != "causal-lm":
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def reload_with_head(model: torch.nn.Module, load, tokenizer, head: str) -> torch.nn.Module:
    """The same weights under another head (an SFT result becoming a reward model): written to a temporary
    directory and loaded back by `load(ResolvedModel)`; a new head starts untrained."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tunelab-merged-") as folder:
        model.save_pretrained(folder)
        del model
        return with_pad(load(ResolvedModel(folder, folder, "hf_dir")), tokenizer, head)


def _head(ref: RunRef) -> dict:
    """The model class the run trained, with its label names (saved by the stage beside the weights)."""
    from tunelab.stages import get_stage

    stage = get_stage(ref.config)
    if stage.head == "causal-lm":
        return {"head": "causal-lm"}
    stage.load_saved(ref.weights)
    return {"head": stage.head, **stage.model_kwargs()}


def load_any(path: str, dtype: torch.dtype = torch.float32, model_cfg: ModelConfig | None = None) -> LoadedModel:
    """Everything `--model` accepts, loaded for inference."""
    ref = find_run(path)
    if ref is not None:
        return load_run(ref, dtype)
    cfg = model_cfg or ModelConfig(path=path)
    base = resolve_model(path, cfg.gguf_file)
    return LoadedModel(load_model(base, cfg, dtype), load_tokenizer(base, cfg), base, dtype=dtype)


def _local(folder: Path) -> ResolvedModel:
    return ResolvedModel(str(folder), str(folder), "hf_dir")
