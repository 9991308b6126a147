"""The models a server answers for, by name.

Each `--model` value is loaded once. Adapter runs trained on the same base share that base: one peft model
holds every adapter under its own name, and a request switches to its adapter before generating.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunelab.errors import TunelabError
from tunelab.methods import Method, get_method
from tunelab.methods.peft_base import PeftMethod
from tunelab.config import ModelConfig
from tunelab.models import ResolvedModel, load_tokenizer, resolve_model
from tunelab.runs.loading import LoadedModel, RunRef, find_run, load_any, load_run, resolve_base
from tunelab.serve.jobs import Lane
from tunelab.serve.engine import ChatEngine


@dataclass(frozen=True)
class ModelSpec:
    name: str   # what requests put in `model`
    path: str   # what `--model` accepts: run directory, checkpoint-N, model dir, hub id, ...


def parse_model_spec(value: str) -> ModelSpec:
    """`NAME=RUN` serves RUN as NAME; anything else is served under the value as given."""
    name, sep, path = value.partition("=")
    if sep and name and path and "/" not in name and not Path(value).exists():
        return ModelSpec(name, path)
    return ModelSpec(value, value)


@dataclass
class ServedModel:
    name: str
    engine: ChatEngine
    adapter: str | None = None   # peft adapter to switch on before answering; None: the model as loaded
    base: bool = False           # answers come from the model with its adapters switched off
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def lane(self) -> Lane:
        """Where its requests decode: requests for one model and one adapter batch together."""
        return Lane(self.engine, self.adapter, self.base)


class ModelRegistry:
    """Served models by name; the first one answers requests that name no model."""

    def __init__(self, models: list[ServedModel]):
        if not models:
            raise TunelabError("--model: give at least one model to serve")
        self.models: dict[str, ServedModel] = {}
        for model in models:
            if model.name in self.models:
                raise TunelabError(f"--model: the name {model.name!r} is given twice (use NAME=RUN to rename one)")
            self.models[model.name] = model
        self.default = models[0]

    def get(self, name: str | None) -> ServedModel | None:
        return self.default if name is None else self.models.get(name)

    def __iter__(self):
        return iter(self.models.values())


def load_registry(specs: list[ModelSpec], dtype: torch.dtype, device: str) -> ModelRegistry:
    """Loads adapter runs first, so a plain model given beside them that is their base joins them instead of being
    loaded a second time; the registry keeps the order given."""
    loader = SharingLoader(dtype, device)
    runs_first = sorted(range(len(specs)), key=lambda index: find_run(specs[index].path) is None)
    served = {index: loader.load(specs[index]) for index in runs_first}
    return ModelRegistry([served[index] for index in range(len(specs))])


class SharingLoader:
    """Loads each spec, adding an adapter run to an already loaded peft model when their bases match, and serving
    a plain model that is such a base as that peft model with its adapters switched off."""

    def __init__(self, dtype: torch.dtype, device: str):
        self.dtype, self.device = dtype, device
        self.shared: dict[tuple, LoadedModel] = {}   # share_key -> the loaded peft model holding those adapters

    def load(self, spec: ModelSpec) -> ServedModel:
        ref = find_run(spec.path)
        if ref is not None:
            check_generates(ref, spec)
        key = share_key(ref) if ref is not None else None
        if key is None:
            shared = self._as_base(spec) if ref is None else None
            return shared or ServedModel(spec.name, ChatEngine(load_any(spec.path, self.dtype), self.device))
        if key not in self.shared:
            loaded = load_run(ref, self.dtype)
            self.shared[key] = loaded
            return ServedModel(spec.name, ChatEngine(loaded, self.device), loaded.model.active_adapter)
        return self._add_adapter(spec, ref, self.shared[key].model)

    def _add_adapter(self, spec: ModelSpec, ref: RunRef, model: torch.nn.Module) -> ServedModel:
        adapter = f"adapter_{len(model.peft_config)}"  # adapter names become module keys: no dots allowed
        model.load_adapter(str(ref.weights), adapter_name=adapter)
        weights = str(ref.weights)
        tokenizer = load_tokenizer(ResolvedModel(weights, weights, "hf_dir"), ref.config.model)  # its own template
        loaded = LoadedModel(model, tokenizer, resolve_base(ref), get_method(ref.config.method), ref)
        return ServedModel(spec.name, ChatEngine(loaded, self.device), adapter)

    def _as_base(self, spec: ModelSpec) -> ServedModel | None:
        """The plain model `spec` names, when an adapter run loaded it already (same place, default loading)."""
        if not self.shared:
            return None
        config = ModelConfig(path=spec.path)
        base = resolve_model(spec.path, config.gguf_file)
        for (location, loading, _), loaded in self.shared.items():
            if location == base.location and loading == _loading(config):
                own = LoadedModel(loaded.model, load_tokenizer(base, config), base, loaded.method, None, loaded.dtype)
                return ServedModel(spec.name, ChatEngine(own, self.device), base=True)
        return None


def _loading(config: ModelConfig) -> str:
    """How a base is loaded, apart from where from: runs whose bases load alike can share one copy."""
    return json.dumps(config.model_dump(exclude={"path"}), sort_keys=True, default=str)


def share_key(ref: RunRef) -> tuple | None:
    """Runs with equal keys can live in one peft model: adapters of one peft type, trained directly on the
    same base loaded the plain way. None (load on its own) for whole-model runs, runs started from another
    run (their start is a merged model), and methods that load their base differently (QLoRA quantizes it)."""
    method = get_method(ref.config.method)
    if not isinstance(method, PeftMethod) or type(method).load_base is not Method.load_base:
        return None
    if find_run(ref.config.model.path) is not None:
        return None
    from peft import PeftConfig

    peft_type = str(PeftConfig.from_pretrained(str(ref.weights)).peft_type)
    return resolve_base(ref).location, _loading(ref.config.model), peft_type


def check_generates(ref: RunRef, spec: ModelSpec) -> None:
    from tunelab.stages import get_stage

    if get_stage(ref.config).head != "causal-lm":
        raise TunelabError(f"--model {spec.path}: a {ref.config.train.stage} run scores text instead of generating "
                           "it; serve a run that generates (use `tunelab predict` for this one)")
