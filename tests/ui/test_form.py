"""The config the train form builds: the same schema as `tunelab train` validates it, and the file it writes
is what `load_config` reads back; each method and stage writes exactly the keys it reads."""
from __future__ import annotations

import pytest

from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.methods import METHODS
from tunelab.stages import STAGES
from tunelab.ui.fields import all_fields, method_fields, stage_fields
from tunelab.ui.form import build_config, build_raw, form_defaults, preview, suggest_run_name, write_config


@pytest.fixture()
def values():
    return {**form_defaults(), "ui.run_name": "r1"}


def test_the_written_config_is_what_the_cli_reads(values, tmp_path):
    raw, config = build_config(values, tmp_path)
    path = write_config(raw, tmp_path)
    assert path == tmp_path / ".ui" / "configs" / "r1.yaml"
    assert load_config(path) == config
    assert config.output.dir == str((tmp_path / "r1").resolve())
    assert (config.model.path, config.data.path, config.method.name, config.train.stage) == (
        "smollm2-135m-instruct", "builtin:identity", "lora", "sft")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_writes_the_keys_it_reads(values, tmp_path, method):
    values["method.name"] = method
    raw = build_raw(values, tmp_path)
    written = set(raw["method"]) - {"name"}
    reads = set(METHODS[method].options)
    assert written <= reads
    shown = {f.key.split(".", 1)[1] for f in method_fields() if f.relevant(values)}
    assert shown == reads  # every key it reads has a widget, and no other is shown
    build_config(values, tmp_path)  # validates: every method trains with sft


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_shows_and_writes_its_own_keys(values, tmp_path, stage):
    values["train.stage"] = stage
    values["train.reward"] = "length"  # grpo needs one; other stages must not write it
    raw = build_raw(values, tmp_path)
    own = {f.key.split(".", 1)[1] for f in stage_fields() if f.relevant(values)}
    assert own == set(STAGES[stage].options)
    other = {f.key.split(".", 1)[1] for f in stage_fields()} - own
    assert not other & set(raw["train"])
    assert raw["train"]["stage"] == stage


def test_every_schema_key_of_the_form_sections_validates_its_default(values, tmp_path):
    keys = {field.key for field in all_fields()}
    assert {"train.lr", "train.max_steps", "method.r", "method.target_modules", "data.template", "train.beta"} <= keys
    for field in all_fields():
        assert field.parse(field.shown(field.default)) == field.default, field.key


def test_values_come_back_typed(values, tmp_path):
    values.update({"method.target_modules": "q_proj, v_proj", "train.max_steps": 6.0, "data.format": "",
                   "data.template": "chatml", "train.seed": 7})
    raw, config = build_config(values, tmp_path)
    assert config.method.target_modules == ["q_proj", "v_proj"] and config.train.max_steps == 6
    assert config.data.format is None and config.data.template == "chatml"
    assert raw["train"]["seed"] == 7  # an advanced key is written once it differs from its default
    assert "optimizer" not in raw["train"]


@pytest.mark.parametrize("change, message", [
    ({"train.lr": 0}, "train form: train.lr: Input should be greater than 0 (got 0)"),
    ({"method.top_k": 9}, "method.top_k: 9 is more than method.num_experts (4)"),
    ({"ui.run_name": "../x"}, "run name '../x': use letters, digits"),
    ({"ui.run_name": ""}, "run name: required"),
    ({"ui.model_source": "local folder or .gguf", "ui.model_path": "/no/such/model"}, "model: /no/such/model: no such"),
    ({"ui.model_source": "hub id", "ui.model_path": "not a hub id"}, "is not a hub id (expected org/name)"),
    ({"method.name": "adapter", "train.stage": "classify"}, "method.name 'adapter' with train.stage 'classify'"),
    ({"ui.extra": "eval: [unclosed"}, "extra YAML line 1: invalid YAML"),
    ({"ui.extra": "- a list"}, "extra YAML: expected a mapping"),
    ({"ui.extra": "trian: {lr: 1}"}, "trian: unknown key; did you mean 'train'?"),
])
def test_bad_values_name_the_key(values, tmp_path, change, message):
    values.update(change)
    if "method.top_k" in change:
        values["method.name"] = "moe-lora"
    with pytest.raises(TunelabError) as caught:
        build_config(values, tmp_path)
    assert message in str(caught.value)
    _, problems = preview(values, tmp_path)
    assert message in problems  # the live preview shows the same reason


def test_llamafactory_folder_needs_a_chosen_dataset(values, tmp_path):
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "assets" / "llamafactory"
    values.update({"ui.data_source": "file or folder", "ui.data_path": str(folder)})
    text, problems = preview(values, tmp_path)
    assert f"path: {folder}" in text  # the rest of the config is still shown
    assert "data: choose a dataset from" in problems and "identity, alpaca_en_demo" in problems
    values["ui.datasets"] = ["identity", "alpaca_en_demo"]
    _, config = build_config(values, tmp_path)
    assert config.data.dataset == "identity,alpaca_en_demo"


def test_extra_yaml_adds_sections(values, tmp_path):
    values["ui.extra"] = "eval:\n  data: builtin:identity_heldout\n  metrics: [contains]\ntrain:\n  warmup: 2\n"
    _, config = build_config(values, tmp_path)
    assert config.eval.data == "builtin:identity_heldout" and config.eval.metrics == ["contains"]
    assert config.train.warmup == 2 and config.train.lr == 2e-4


def test_suggested_names_skip_existing_runs(values, tmp_path):
    (tmp_path / "lora-sft-1").mkdir()
    assert suggest_run_name(values, tmp_path) == "lora-sft-2"
    assert suggest_run_name(values, tmp_path, taken={"lora-sft-2"}) == "lora-sft-3"
