"""The method x stage matrix: every pair the config check lets through really trains a step on the tiny
model, and every pair it refuses is refused with the reason."""
import json
import math

import pytest

from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.methods import METHODS
from tunelab.stages import STAGES
from tunelab.stages.support import unsupported
from tunelab.train import prepare

CHECKED_STAGES = ("dpo", "reward", "grpo", "classify")


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stage-data")
    rows = {
        "dpo": [{"prompt": f"Name? ({i})", "chosen": "Quill.", "rejected": "Toaster."} for i in range(8)],
        "grpo": [{"prompt": f"Say hi ({i})"} for i in range(8)],
        "classify": [{"text": f"it was {w}", "label": lab} for lab, w in [("good", "fine"), ("bad", "sad")] * 4],
    }
    rows["reward"] = rows["dpo"]
    paths = {}
    for stage, records in rows.items():
        paths[stage] = folder / f"{stage}.jsonl"
        paths[stage].write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return paths


@pytest.mark.parametrize("stage", CHECKED_STAGES)
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_allowed_pair_trains_and_every_refused_pair_says_why(name, stage, data_files, tiny_model_dir,
                                                                  write_config, tmp_path):
    path = write_config(tiny_model_dir, data_files[stage], f"{name}-{stage}",
                        method={"name": name, "trainable_layers": 1, "num_virtual_tokens": 4},
                        train={"stage": stage, "max_steps": 1, "batch_size": 4, "reward": ["length"],
                               "num_generations": 2, "max_new_tokens": 4})
    reason = unsupported(METHODS[name], STAGES[stage])
    if reason:
        with pytest.raises(TunelabError, match=rf"method.name '{name}' with train.stage '{stage}'"):
            load_config(path)
        return
    trainer = prepare(load_config(path), tmp_path / "out").trainer
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(math.isfinite(loss) for loss in losses)
