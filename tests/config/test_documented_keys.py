"""Every key the README and docs/ name exists, docs/config.md is what the schema generates, the README stays short, and every key of the schema takes each form of value it
documents, written in YAML and as a dotted override alike: scalars, choices, lists (and one item for a
list), nested sections."""
import re
import types
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from tunelab.config import load_config
from tunelab.config.run import RunConfig

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = ("model", "data", "method", "train", "output", "eval", "continual")
KEY = re.compile(rf"`((?:{'|'.join(SECTIONS)})(?:\.[a-z_0-9]+)+)`")
FILES = (".json", ".jsonl", ".py", ".yaml", ".html", ".png", ".md")  # `eval.json` is a file, not a key


def _section_class(annotation):
    """The Section model behind `X` or `X | None`, else None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def leaf_keys(model=RunConfig, prefix=()) -> dict[str, object]:
    """dotted key -> pydantic field, for every leaf of the schema."""
    found = {}
    for name, field in model.model_fields.items():
        inner = _section_class(field.annotation)
        if inner is not None:
            found.update(leaf_keys(inner, prefix + (name,)))
        else:
            found[".".join(prefix + (name,))] = field
    return found


LEAVES = leaf_keys()


def _registry_names(key: str) -> list | None:
    from tunelab.continual import PENALTIES
    from tunelab.data.formats import CONVERTERS
    from tunelab.data.templates import TEMPLATES
    from tunelab.methods import METHODS
    from tunelab.stages import STAGES

    # the implementations' registries: a name the docs list must also train
    return {"train.stage": sorted(STAGES), "method.name": sorted(METHODS), "data.format": sorted(CONVERTERS),
            "data.template": sorted(TEMPLATES), "continual.method": ["none", *sorted(PENALTIES)]}.get(key)


# Forms the README gives beyond the type's own (a fraction or a count, true or a path, entries with weights).
ALSO = {"train.resume": [True, "runs/x/checkpoint-4"], "data.val_size": [0.2, 3], "train.warmup": [0.1, 20],
        "train.kl_coef": [0.1], "continual.method": [["ewc", "kl"], [{"method": "ewc", "weight": 10.0},
                                                                      {"method": "replay"}]]}


def documented_values(key: str, field) -> list:
    """The forms a key is documented to take: every choice, both booleans, the default, a list and one item."""
    return _type_values(key, field) + ALSO.get(key, [])


def _type_values(key: str, field) -> list:
    names = _registry_names(key)
    if names:
        return names
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    if annotation is bool or args == [bool]:  # bool, or bool | None
        return [True, False]
    if field.is_required():
        return ["other.json"]
    default = field.get_default(call_default_factory=True)
    if typing.get_origin(annotation) is list or any(typing.get_origin(a) is list for a in args):
        item = default[0] if default else "norm"
        return [[item], [item, item] if key != "eval.metrics" else ["bleu", "rouge"]]
    if default is not None:
        return [default]
    kinds = set(args) if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) else {annotation}
    return [1] if int in kinds else [0.5] if float in kinds else ["x"]


# Keys that need another key set to be valid at all (the cross-section checks of RunConfig).
MIXED = {"data": {"path": None, "mix": ["a.json", "b.json"]}}  # data.mix instead of data.path
CONTEXT = {"data.streaming": {"train": {"max_steps": 5}}, "train.early_stopping_patience": {"data": {"val_size": 0.1}},
           "data.subset": {"data": {"path": "hf:org/name"}}, "data.mix_size": MIXED, "data.mix_stop": MIXED,
           "train.optimizer": {"method": {"name": "full"}},  # GaLore/APOLLO train full weight matrices
           **{f"train.projection.{key}": {"method": {"name": "full"}, "train": {"optimizer": "galore_adamw"}}
              for key in ("rank", "update_interval", "scale", "proj_type", "target_modules")}}
NOT_IN_A_RUN = {"continual.tasks"}  # a sequence file's key: a run config refuses it by design
IN_A_LIST = ("data.mix.",)  # keys of the sections in a list (data.mix entries): tests/data/test_mixture.py


def _reader(key: str) -> dict:
    """A method or stage that reads `key` when only some do (config.reads refuses it elsewhere)."""
    from tunelab.specs.methods import METHOD_SPECS
    from tunelab.specs.stages import STAGE_SPECS

    section, name = key.split(".", 1)
    if section == "method" and name not in METHOD_SPECS["lora"].options:
        readers = [m for m, spec in sorted(METHOD_SPECS.items()) if name in spec.options]
        return {"method": {"name": readers[0]}} if readers else {}
    if section == "train" and any(name in spec.options for spec in STAGE_SPECS.values()):
        return {"train": {"stage": next(s for s, spec in sorted(STAGE_SPECS.items()) if name in spec.options)}}
    return {}


def _raw(key: str, value) -> dict:
    raw = {"data": {"path": "x.json"}, "eval": {"data": "builtin:probes"}}
    for section, values in _reader(key).items():
        raw.setdefault(section, {}).update(values)
    for section, values in CONTEXT.get(key, {}).items():
        raw.setdefault(section, {}).update(values)
    *path, last = key.split(".")
    target = raw
    for part in path:
        target = target.setdefault(part, {})
    target[last] = value
    return raw


def _value_at(config, key: str):
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


DOCS = [README, *sorted((README.parent / "docs").glob("*.md"))]


def test_every_key_the_readme_and_docs_name_is_in_the_schema():
    named = {key for doc in DOCS for key in KEY.findall(doc.read_text(encoding="utf-8")) if not key.endswith(FILES)}
    assert len(named) > 50, "the docs name config keys"
    unknown = sorted(key for key in named if key not in LEAVES and not any(k.startswith(key + ".") for k in LEAVES))
    assert not unknown, unknown


CASES = [(key, value) for key, field in sorted(LEAVES.items()) if key not in NOT_IN_A_RUN
         and not key.startswith(IN_A_LIST) for value in documented_values(key, field)]


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={v}" for k, v in CASES])
def test_each_documented_form_is_accepted_in_yaml_and_as_an_override(key, value, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_raw(key, value)), encoding="utf-8")
    from_yaml = _value_at(load_config(path), key)
    base = _raw(key, value)
    *parents, last = key.split(".")
    holder = base
    for part in parents:
        holder = holder[part]
    del holder[last]
    path.write_text(yaml.safe_dump(base), encoding="utf-8")
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    from_override = _value_at(load_config(path, [f"{key}={text}"]), key)
    assert _plain(from_yaml) == _plain(from_override)
    if not (isinstance(value, list) and any(isinstance(item, dict) for item in value)):  # entries gain defaults
        assert _plain(from_yaml) == value


@pytest.mark.parametrize("key", sorted(k for k, f in LEAVES.items() if typing.get_origin(f.annotation) is list
                                       and k not in NOT_IN_A_RUN))
def test_a_list_key_takes_one_item_as_itself(key, tmp_path):
    """`train.reward=length` and `reward: length` mean [length] (the README writes single rewards that way)."""
    item = _type_values(key, LEAVES[key])[0][0]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_raw(key, item)), encoding="utf-8")
    assert _value_at(load_config(path), key) == [item]
    assert _value_at(load_config(path, [f"{key}={item}"]), key) == [item]


def test_one_target_module_is_a_list_of_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": "x.json"}}), encoding="utf-8")
    assert load_config(path, ["method.target_modules=q_proj"]).method.target_modules == ["q_proj"]
    assert load_config(path, ["method.target_modules=all-linear"]).method.target_modules == "all-linear"


def _plain(value):
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def test_docs_config_md_is_generated_from_the_schema():
    from tunelab.config.reference import config_markdown

    doc = README.parent / "docs" / "config.md"
    assert doc.read_text(encoding="utf-8") == config_markdown(), \
        "docs/config.md is stale: regenerate it with `python -m tunelab.config.reference > docs/config.md`"


def test_the_readme_is_what_a_newcomer_reads_in_five_minutes():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move detail into docs/"
    top = "\n".join(lines[:10])
    assert "make demo" in top and "make test" in top  # the two commands come first
