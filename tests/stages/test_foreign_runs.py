"""LLaMA-Factory's shipped example configs and axolotl LoRA/QLoRA/DPO configs train with `tunelab train` as they
are, with only their model pointed at the tiny model, their data at LLaMA-Factory's demo files, their output at a
temporary folder and one step."""
import json
from pathlib import Path

import pytest
import yaml

from tunelab.cli.main import main

ASSETS = Path(__file__).resolve().parents[1] / "assets"
LF = ASSETS / "foreign" / "llamafactory"
AXOLOTL = ASSETS / "foreign" / "axolotl"
LF_DATA = ASSETS / "llamafactory"


def _run(raw: dict, tmp_path: Path, capsys) -> tuple[dict, str]:
    path = tmp_path / "foreign.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    return summary, out


@pytest.mark.parametrize(("name", "model", "metric"), [
    ("train_lora/qwen3_lora_sft.yaml", "tiny", "train_loss"),
    ("train_lora/qwen3_lora_dpo.yaml", "tiny", "rewards/margins"),
    ("train_lora/qwen3_lora_kto.yaml", "tiny", "train_loss"),
    ("train_lora/qwen3_lora_reward.yaml", "tiny", "train_loss"),
    ("train_lora/qwen3_lora_pretrain.yaml", "tiny", "train_loss"),
    ("train_full/qwen3_full_sft.yaml", "tiny", "train_loss"),
    ("train_qlora/qwen3_lora_sft_otfq.yaml", "wide", "train_loss"),
    ("extras/galore/llama3_full_sft.yaml", "tiny", "train_loss"),
    ("extras/apollo/llama3_full_sft.yaml", "tiny", "train_loss"),
])
def test_llamafactory_example_trains_unchanged(name, model, metric, tiny_model_dir, wide_model_dirs, tmp_path,
                                               capsys, monkeypatch):
    monkeypatch.chdir(LF)  # its DeepSpeed files are named relative to LLaMA-Factory's checkout
    raw = yaml.safe_load((LF / name).read_text(encoding="utf-8"))
    raw.update(model_name_or_path=str(tiny_model_dir if model == "tiny" else wide_model_dirs["llama"]),
               dataset_dir=str(LF_DATA), output_dir=str(tmp_path / "run"), max_steps=1)
    summary, out = _run(raw, tmp_path, capsys)
    assert summary["global_step"] == 1
    assert metric in summary, sorted(summary)
    assert "LLaMA-Factory config" in out and "per_device_train_batch_size" in out


@pytest.mark.parametrize(("name", "model", "data", "stage"), [
    ("llama3_lora.yml", "tiny", "alpaca_en_demo.json", "sft"),
    ("llama3_qlora.yml", "wide", "alpaca_en_demo.json", "sft"),
    ("llama3_dpo_lora.yml", "tiny", "dpo_en_demo.json", "dpo"),
])
def test_axolotl_config_trains_unchanged(name, model, data, stage, tiny_model_dir, wide_model_dirs, tmp_path, capsys):
    raw = yaml.safe_load((AXOLOTL / name).read_text(encoding="utf-8"))
    raw["datasets"][0]["path"] = str(LF_DATA / data)
    raw.update(base_model=str(tiny_model_dir if model == "tiny" else wide_model_dirs["llama"]),
               output_dir=str(tmp_path / "run"), max_steps=1, val_set_size=0)
    summary, out = _run(raw, tmp_path, capsys)
    assert summary["global_step"] == 1
    assert "axolotl config" in out
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text(encoding="utf-8"))
    assert config["train"]["stage"] == stage and config["method"]["r"] == raw["lora_r"]


def test_convert_writes_a_config_that_trains_the_same(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from tunelab.config import load_config

    raw = yaml.safe_load((LF / "train_lora/qwen3_lora_sft.yaml").read_text(encoding="utf-8"))
    raw.update(model_name_or_path=str(tiny_model_dir), dataset_dir=str(LF_DATA), output_dir=str(tmp_path / "run"))
    source = tmp_path / "lf.yaml"
    source.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["convert", str(source), "--output", str(tmp_path / "tunelab.yaml")]) == 0
    assert "learning_rate" in capsys.readouterr().out
    assert load_config(tmp_path / "tunelab.yaml") == load_config(source)


def test_convert_refuses_and_writes_nothing(tmp_path, capsys):
    source = tmp_path / "lf.yaml"
    source.write_text("model_name_or_path: m\nstage: sft\ndataset: identity\nuse_muon: true\n", encoding="utf-8")
    assert main(["convert", str(source), "--output", str(tmp_path / "out.yaml")]) == 2
    assert not (tmp_path / "out.yaml").exists()
    assert "use_muon" in capsys.readouterr().err


def test_folded_accumulation_trains_what_the_micro_batches_train(tiny_model_dir, tmp_path, capsys):
    """1 x 4 accumulated and the folded 4 x 1: the same examples per step and the same loss (tunelab normalises over
    the whole accumulated batch), so the translation may take the faster one."""
    raw = yaml.safe_load((LF / "train_lora/qwen3_lora_sft.yaml").read_text(encoding="utf-8"))
    raw.update(model_name_or_path=str(tiny_model_dir), dataset_dir=str(LF_DATA), max_steps=2, bf16=False,
               per_device_train_batch_size=1, gradient_accumulation_steps=4, logging_steps=1)
    losses = []
    for name, overrides in (("folded", []), ("micro", ["train.batch_size=1", "train.grad_accum=4"])):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**raw, "output_dir": str(tmp_path / name)}), encoding="utf-8")
        assert main(["train", str(path), *overrides]) == 0
        records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses.append([record["loss"] for record in records if "loss" in record])
    capsys.readouterr()
    assert len(losses[0]) == 2 and losses[0] == pytest.approx(losses[1], rel=1e-4)
