"""LLaMA-Factory and axolotl configs translate key by key: every key mapped, ignored with a reason, or refused."""
from pathlib import Path

import pytest
import yaml

from tunelab.config import validate
from tunelab.config.foreign import DIALECTS, check, detect, target_lines, translate
from tunelab.config.foreign.rules import DEFAULT, IGNORED, MAPPED, REFUSED
from tunelab.config.loader import load_config
from tunelab.errors import TunelabError

FOREIGN = Path(__file__).resolve().parents[1] / "assets" / "foreign"
LF = FOREIGN / "llamafactory"
AXOLOTL = FOREIGN / "axolotl"
LF_FILES = sorted(path.relative_to(LF).as_posix() for path in LF.rglob("*.yaml"))
AXOLOTL_FILES = sorted(path.name for path in AXOLOTL.glob("*.yml"))

# Shipped files tunelab cannot train, and the keys that say why (everything else translates with no refusal).
EXPECTED_REFUSALS = {
    "extras/badam/llama3_full_sft.yaml": {"use_badam"},
    "extras/llama_pro/llama3_freeze_sft.yaml": {"use_llama_pro"},
    "extras/mod/llama3_full_sft.yaml": {"mixture_of_depths"},
    "extras/oft/llama3_oft_sft.yaml": {"finetuning_type"},
    "extras/oft/qwen2_5vl_oft_sft.yaml": {"finetuning_type", "image_max_pixels", "video_max_pixels", "template"},
    "train_full/qwen3vl_full_sft.yaml": {"image_max_pixels", "video_max_pixels", "template"},
    "train_lora/qwen3vl_lora_dpo.yaml": {"image_max_pixels", "video_max_pixels", "template"},
    "train_lora/qwen3vl_lora_sft.yaml": {"image_max_pixels", "video_max_pixels", "template"},
    "train_lora/qwen3_lora_sft_ray.yaml": {"dataset", "ray_num_workers"},
}


def _translate(path: Path, name: str | None = None):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    dialect = DIALECTS[name] if name else detect(raw)
    return raw, translate(raw, dialect, str(path))


@pytest.fixture()
def in_lf_examples(monkeypatch):
    """LLaMA-Factory's configs name their DeepSpeed files relative to its checkout (examples/deepspeed/...)."""
    monkeypatch.chdir(LF)


def test_fixtures_are_there():
    assert len(LF_FILES) >= 20 and "train_lora/qwen3_lora_sft.yaml" in LF_FILES
    assert len(AXOLOTL_FILES) >= 4


@pytest.mark.parametrize("name", LF_FILES)
def test_llamafactory_example_every_key_accounted(name, in_lf_examples):
    raw, translation = _translate(LF / name)
    assert translation.dialect == "LLaMA-Factory"
    keys = [row.key for row in translation.rows if row.outcome != DEFAULT and not row.key.startswith("(")]
    assert keys == list(raw), "one row per key, in the file's order"
    for row in translation.rows:
        assert row.outcome in (MAPPED, IGNORED, REFUSED, DEFAULT)
        assert row.detail, f"{row.key}: every row says what became of the key"
    assert {row.key for row in translation.refused} == EXPECTED_REFUSALS.get(name, set())


@pytest.mark.parametrize("name", [name for name in LF_FILES if name not in EXPECTED_REFUSALS])
def test_llamafactory_example_validates_as_tunelab_config(name, in_lf_examples):
    _, translation = _translate(LF / name)
    config = validate(translation.config, source=name, lines=target_lines(translation))
    assert config.model.path == yaml.safe_load((LF / name).read_text())["model_name_or_path"]


@pytest.mark.parametrize("name", AXOLOTL_FILES)
def test_axolotl_config_every_key_accounted_and_validates(name):
    raw, translation = _translate(AXOLOTL / name)
    assert translation.dialect == "axolotl"
    assert [row.key for row in translation.rows if not row.key.startswith("(")] == list(raw)
    assert not translation.refused, translation.table()
    config = validate(translation.config, source=name)
    assert config.model.path == raw["base_model"]


def test_the_table_shows_each_key_and_what_became_of_it(in_lf_examples):
    _, translation = _translate(LF / "train_lora/qwen3_lora_sft.yaml")
    table = translation.table()
    assert "learning_rate" in table and "train.lr = 0.0001" in table
    assert "plot_loss" in table and "ignored" in table
    assert "method.alpha = 16" in table  # LLaMA-Factory's lora_alpha default (2 x rank), written out


LF_BASE = {"model_name_or_path": "m", "stage": "sft", "finetuning_type": "lora", "dataset": "identity",
           "output_dir": "out"}


def lf(**keys):
    raw = {**LF_BASE, **keys}
    return translate(raw, DIALECTS["llamafactory"], "lf.yaml")


def test_an_unknown_key_is_refused_by_name():
    translation = lf(lora_rnak=8)
    assert [row.key for row in translation.refused] == ["lora_rnak"]
    with pytest.raises(TunelabError, match=r"lf.yaml: lora_rnak: not a key tunelab knows"):
        check(translation)


def test_defaults_that_train_differently_are_written_out():
    config = lf(lora_rank=16).config
    assert config["train"]["lr"] == 5e-5 and config["train"]["scheduler"] == "linear"
    assert config["train"]["max_length"] == 2048 and config["train"]["precision"] == "fp32"
    assert config["method"]["alpha"] == 32  # 2 x rank
    assert lf(bf16=True).config["train"]["precision"] == "bf16"
    assert lf(lora_alpha=8).config["method"]["alpha"] == 8.0


def test_implied_finetuning_type_is_lora_with_its_alpha():
    raw = {key: value for key, value in LF_BASE.items() if key != "finetuning_type"}
    translation = translate({**raw, "lora_rank": 4}, DIALECTS["llamafactory"], "lf.yaml")
    assert translation.config["method"] == {"name": "lora", "alpha": 8, "r": 4}


@pytest.mark.parametrize(("keys", "stage", "extra"), [
    ({"stage": "pt"}, "pretrain", {}),
    ({"stage": "rm"}, "reward", {}),
    ({"stage": "kto", "pref_beta": 0.2}, "kto", {"beta": 0.2}),
    ({"stage": "dpo"}, "dpo", {}),
    ({"stage": "dpo", "pref_loss": "ipo"}, "dpo", {"dpo_loss": "ipo"}),
    ({"stage": "dpo", "pref_loss": "orpo"}, "orpo", {}),
    ({"stage": "dpo", "pref_loss": "simpo", "simpo_gamma": 0.7}, "simpo", {"simpo_gamma": 0.7}),
])
def test_stages(keys, stage, extra):
    train = lf(**keys).config["train"]
    assert train["stage"] == stage
    assert extra.items() <= train.items()


@pytest.mark.parametrize(("keys", "method"), [
    ({"use_dora": True}, {"name": "dora"}),
    ({"use_rslora": True}, {"name": "rslora"}),
    ({"pissa_init": True}, {"name": "pissa"}),
    ({"loraplus_lr_ratio": 16.0}, {"name": "loraplus", "loraplus_ratio": 16.0}),
    ({"quantization_bit": 4}, {"name": "qlora", "bits": 4}),
    ({"quantization_bit": 8, "quantization_method": "bnb"}, {"name": "qlora", "bits": 8}),
    ({"finetuning_type": "full"}, {"name": "full"}),
    ({"finetuning_type": "freeze", "freeze_trainable_layers": 1, "freeze_extra_modules": "embed_tokens"},
     {"name": "freeze", "trainable_layers": 1, "trainable_modules": ["embed_tokens"]}),
    ({"lora_target": "q_proj,v_proj"}, {"target_modules": ["q_proj", "v_proj"]}),
])
def test_methods(keys, method):
    assert method.items() <= lf(**keys).config["method"].items()


@pytest.mark.parametrize(("keys", "refused"), [
    ({"use_dora": True, "quantization_bit": 4}, "finetuning_type"),
    ({"finetuning_type": "full", "quantization_bit": 4}, "finetuning_type"),
    ({"quantization_bit": 4, "quantization_method": "hqq"}, "finetuning_type"),
    ({"finetuning_type": "oft"}, "finetuning_type"),
    ({"freeze_trainable_layers": -2, "finetuning_type": "freeze"}, "freeze_trainable_layers"),
    ({"pref_ftx": 0.5, "stage": "dpo"}, "pref_ftx"),
    ({"train_on_prompt": True}, "train_on_prompt"),
    ({"template": "vicuna"}, "template"),
    ({"lr_scheduler_type": "polynomial"}, "lr_scheduler_type"),
])
def test_what_tunelab_cannot_honour_is_refused(keys, refused):
    assert refused in {row.key for row in lf(**keys).refused}


def test_off_values_of_refused_keys_are_fine():
    translation = lf(train_on_prompt=False, use_badam=False, pref_ftx=0)
    assert not translation.refused


def test_keys_the_stage_does_not_read_are_ignored_as_the_other_tool_ignores_them():
    translation = lf(pref_beta=0.3)  # an SFT run: LLaMA-Factory never reads pref_beta
    assert "beta" not in translation.config["train"]
    row = next(row for row in translation.rows if row.key == "pref_beta")
    assert row.outcome == IGNORED and "not read by sft" in row.detail
    validate(translation.config)


def test_interleaved_datasets_become_a_weighted_mixture():
    config = lf(dataset="a,b", mix_strategy="interleave_under", interleave_probs="0.7,0.3", dataset_dir="d").config
    assert config["data"]["mix"] == [{"path": "d", "dataset": "a", "weight": 0.7},
                                     {"path": "d", "dataset": "b", "weight": 0.3}]
    assert config["data"]["mix_stop"] == "first_exhausted"
    assert lf(dataset="a,b", mix_strategy="interleave_over").config["data"]["mix_stop"] == "all_exhausted"
    short = lf(dataset="a,b", mix_strategy="interleave_under", interleave_probs="1.0")
    assert [row.key for row in short.refused] == ["dataset"] and "1 values for 2" in short.refused[0].detail


@pytest.mark.parametrize(("keys", "expected"), [
    ({"neftune_noise_alpha": 5}, {"train": {"neftune_alpha": 5.0}}),
    ({"mask_history": True}, {"data": {"train_on": "last"}}),
    ({"max_samples": 100}, {"train": {"max_samples": 100}}),
    ({"optim": "adamw_torch"}, {"train": {"optimizer": "adamw_torch"}}),
    ({"use_swanlab": True}, {"train": {"report_to": "swanlab"}}),
    ({"report_to": "wandb"}, {"train": {"report_to": "wandb"}}),
    ({"finetuning_type": "full", "use_galore": True, "galore_rank": 8, "galore_target": "q_proj,v_proj"},
     {"train": {"optimizer": "galore_adamw", "projection": {"rank": 8, "scale": 2.0,
                                                            "target_modules": ["q_proj", "v_proj"]}}}),
    ({"finetuning_type": "full", "use_apollo": True, "apollo_layerwise": True},
     {"train": {"optimizer": "apollo_adamw", "projection": {"scale": 32.0, "target_modules": "all-linear"}}}),
    ({"val_size": 0.1, "eval_steps": 5, "eval_strategy": "steps"}, {"data": {"val_size": 0.1}, "train": {"eval_steps": 5}}),
])
def test_training_options_by_their_names(keys, expected):
    translation = lf(**keys)
    assert not translation.refused, translation.table()
    for section, values in expected.items():
        assert values.items() <= translation.config[section].items(), translation.config[section]
    validate(translation.config)


def test_online_dataset_dir_reads_hub_ids():
    assert lf(dataset="org/name", dataset_dir="ONLINE").config["data"]["path"] == "hf:org/name"


def test_templates_name_a_family_and_prefer_the_tokenizers_own():
    data = lf(template="llama3").config["data"]
    assert data["template"] == "llama3" and data["prefer_tokenizer_template"] is True
    assert lf(template="qwen3_nothink").config["data"]["enable_thinking"] is False


def test_deepspeed_file_picks_the_engine(in_lf_examples):
    assert lf(deepspeed="examples/deepspeed/ds_z3_config.json").config["train"]["distributed"] == "deepspeed_zero3"
    offload = lf(deepspeed="examples/deepspeed/ds_z3_offload_config.json").config["train"]
    assert offload["deepspeed"] == {"offload_optimizer": True, "offload_params": True}
    assert "deepspeed" in {row.key for row in lf(deepspeed="missing.json").refused}


@pytest.mark.parametrize(("raw", "expected"), [
    (LF_BASE, "llamafactory"),
    ({"model_name_or_path": "m", "finetuning_type": "lora"}, "llamafactory"),
    ({"base_model": "m", "datasets": [{"path": "x", "type": "alpaca"}]}, "axolotl"),
    ({"data": {"path": "x"}, "model_name_or_path": "m", "stage": "sft"}, None),  # a tunelab config with a typo
    ({"model": {"path": "m"}, "base_model": "m", "datasets": []}, None),
    ({"model_name_or_path": "m"}, None),  # not enough to tell: tunelab's own message names the key
])
def test_detection(raw, expected):
    dialect = detect(raw)
    assert (dialect.name if dialect else None) == expected


def test_tunelab_config_with_a_foreign_looking_typo_gets_tunelabs_message(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  path: x.json\nmodel_name_or_path: m\nstage: sft\n", encoding="utf-8")
    with pytest.raises(TunelabError, match=r"c.yaml:3: model_name_or_path: unknown key"):
        load_config(path)


def test_a_refused_key_names_the_file_line(tmp_path):
    path = tmp_path / "lf.yaml"
    path.write_text("model_name_or_path: m\nstage: sft\ndataset: identity\nuse_badam: true\n", encoding="utf-8")
    with pytest.raises(TunelabError, match=r"lf.yaml:4: use_badam: BAdam is not supported"):
        load_config(path)


def test_an_invalid_value_names_the_foreign_line(tmp_path):
    path = tmp_path / "lf.yaml"
    path.write_text("model_name_or_path: m\nstage: sft\ndataset: identity\nlearning_rate: -1\n", encoding="utf-8")
    with pytest.raises(TunelabError, match=r"lf.yaml:4: train.lr"):
        load_config(path)


def test_overrides_are_tunelab_keys_applied_to_the_translation(tmp_path):
    path = tmp_path / "lf.yaml"
    path.write_text("model_name_or_path: m\nstage: sft\ndataset: identity\nlearning_rate: 1.0e-4\n", encoding="utf-8")
    config = load_config(path, ["train.lr=3e-4", "train.max_steps=2"])
    assert config.train.lr == 3e-4 and config.train.max_steps == 2 and config.data.dataset == "identity"


AX_BASE = {"base_model": "m", "datasets": [{"path": "file.json", "type": "alpaca"}], "learning_rate": 1e-4}


def ax(**keys):
    return translate({**AX_BASE, **keys}, DIALECTS["axolotl"], "ax.yml")


@pytest.mark.parametrize(("keys", "method"), [
    ({}, {"name": "full"}),
    ({"adapter": "lora", "lora_r": 16, "lora_alpha": 32}, {"name": "lora", "r": 16, "alpha": 32.0}),
    ({"adapter": "qlora", "load_in_4bit": True}, {"name": "qlora", "bits": 4}),
    ({"adapter": "lora", "load_in_8bit": True}, {"name": "qlora", "bits": 8}),
    ({"adapter": "lora", "peft_use_dora": True}, {"name": "dora"}),
    ({"adapter": "lora", "lora_target_linear": True}, {"target_modules": "all-linear"}),
    ({"adapter": "lora", "lora_target_modules": ["q_proj", "v_proj"]}, {"target_modules": ["q_proj", "v_proj"]}),
])
def test_axolotl_methods(keys, method):
    assert method.items() <= ax(**keys).config["method"].items()


def test_axolotl_defaults_and_datasets(tmp_path):
    config = ax().config
    assert config["train"]["max_length"] == 512 and config["train"]["batch_size"] == 1
    assert config["train"]["epochs"] == 1.0
    assert config["data"]["path"] == "hf:file.json" and config["data"]["format"] == "alpaca"
    local = tmp_path / "local.jsonl"
    local.write_text("{}\n", encoding="utf-8")
    data = ax(datasets=[{"path": str(local), "type": "chat_template"}]).config["data"]
    assert data == {"path": str(local)}
    hub = ax(datasets=[{"path": "org/set", "type": "completion", "name": "en", "split": "train"}]).config
    assert hub["data"] == {"path": "hf:org/set", "subset": "en", "split": "train", "format": "text"}
    assert hub["train"]["stage"] == "pretrain"
    two = ax(datasets=[{"path": "a/b", "type": "alpaca"}, {"path": "c/d", "type": "sharegpt"}]).config["data"]
    assert two["mix_stop"] == "concat" and [source["path"] for source in two["mix"]] == ["hf:a/b", "hf:c/d"]


@pytest.mark.parametrize("entry", [
    {"path": "x", "type": "oasst"},
    {"path": "x", "type": {"field_instruction": "q"}},
    {"path": "x", "type": "chat_template", "roles_to_train": ["user", "assistant"]},
    {"path": "x", "type": "chat_template", "unknown_field": 1},
])
def test_axolotl_dataset_entries_tunelab_cannot_read_are_refused(entry):
    assert "datasets" in {row.key for row in ax(datasets=[entry]).refused}


def test_axolotl_rl_and_special_tokens():
    train = ax(rl="dpo", rl_beta=0.2, adapter="lora").config["train"]
    assert train["stage"] == "dpo" and train["beta"] == 0.2
    assert "special_tokens" in {row.key for row in ax(special_tokens={"eos_token": "</s>"}).refused}
    assert not ax(special_tokens={"pad_token": "<pad>"}).refused


def test_accumulated_micro_batches_become_one_packed_batch():
    folded = lf(per_device_train_batch_size=1, gradient_accumulation_steps=8)
    assert (folded.config["train"]["batch_size"], folded.config["train"]["grad_accum"]) == (8, 1)
    assert "(accumulation)" in folded.table()
    for keys in ({"stage": "dpo"}, {"packing": False}, {"stage": "kto"}):  # TRL batches / packing off: kept
        train = lf(per_device_train_batch_size=2, gradient_accumulation_steps=4, **keys).config["train"]
        assert (train["batch_size"], train["grad_accum"]) == (2, 4)


def test_a_file_without_its_required_keys_is_refused():
    raw = {key: value for key, value in LF_BASE.items() if key != "dataset"}
    translation = translate(raw, DIALECTS["llamafactory"], "lf.yaml")
    assert [row.key for row in translation.refused] == ["(dataset)"]
    with pytest.raises(TunelabError, match=r"lf.yaml: \(dataset\): required"):
        check(translation)
    no_lr = translate({"base_model": "m", "datasets": [{"path": "x", "type": "alpaca"}]}, DIALECTS["axolotl"], "a.yml")
    assert [row.key for row in no_lr.refused] == ["(learning_rate)"]


def test_eval_dataset_is_scored_after_training():
    translation = lf(eval_dataset="identity,alpaca_en_demo", dataset_dir="d")
    assert translation.config["eval"] == {"data": "d", "dataset": "identity,alpaca_en_demo"}
    assert validate(translation.config).eval.dataset == "identity,alpaca_en_demo"
