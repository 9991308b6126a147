"""LLaMA-Factory data directories train by dataset name through their own dataset_info.json."""
from pathlib import Path

import pytest

from tunelab.config import load_config
from tunelab.train import train

LLAMAFACTORY = Path(__file__).resolve().parents[1] / "assets" / "llamafactory"


@pytest.mark.parametrize("dataset", [
    "alpaca_en_demo", "alpaca_zh_demo", "identity", "glaive_toolcall_en_demo", "openai_demo", "alpaca_en_demo,identity",
])
def test_dataset_trains_by_name_without_edits(tiny_model_dir, write_config, dataset):
    name = dataset.replace(",", "+")
    config = load_config(write_config(tiny_model_dir, LLAMAFACTORY, name, data={"dataset": dataset},
                                      train={"max_steps": 1, "max_length": 2048}))
    result = train(config)
    assert result.summary["global_step"] == 1
    assert result.summary["examples"]["kept"] >= 3


@pytest.mark.parametrize(("stage", "dataset", "metric"), [
    ("pretrain", "c4_demo", "train_loss"),        # jsonl, columns: {prompt: text}
    ("pretrain", "wiki_demo", "train_loss"),      # txt, one document per line
    ("dpo", "dpo_en_demo", "rewards/margins"),    # sharegpt ranking: conversations + chosen/rejected objects
    ("dpo", "dpo_alpaca_demo", "rewards/margins"),  # alpaca ranking: instruction/input + chosen/rejected strings
    ("reward", "dpo_en_demo", "eval_pair_accuracy"),
    ("kto", "kto_en_demo", "train_loss"),         # messages + kto_tag
])
def test_stage_trains_on_llamafactory_demo_by_name(stage, dataset, metric, tiny_model_dir, write_config):
    config = load_config(write_config(tiny_model_dir, LLAMAFACTORY, f"{stage}-{dataset}", data={"dataset": dataset},
                                      train={"stage": stage, "max_steps": 2, "batch_size": 2}))
    result = train(config)
    assert result.summary["global_step"] == 2
    assert metric in result.summary, sorted(result.summary)
    assert result.summary["examples"]["kept"] >= 2
