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
