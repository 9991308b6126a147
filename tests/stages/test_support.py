"""The method x stage matrix: every pair the config check lets through really trains a step on the tiny
model, and every pair it refuses is refused with the reason."""
import json
import math

import pytest

from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.methods import METHODS
from tunelab.stages import STAGES
from tunelab.specs.methods import METHOD_SPECS
from tunelab.specs.stages import STAGE_SPECS
from tunelab.specs.support import support_markdown, unsupported
from tunelab.train import prepare

CHECKED_STAGES = tuple(sorted(STAGES))


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stage-data")
    rows = {
        "dpo": [{"prompt": f"Name? ({i})", "chosen": "Quill.", "rejected": "Toaster."} for i in range(8)],
        "grpo": [{"prompt": f"Say hi ({i})"} for i in range(8)],
        "kto": [{"prompt": f"Name? ({i})", "completion": "Quill." if i % 2 else "Toaster.", "label": bool(i % 2)}
                for i in range(8)],
        "sft": [{"instruction": f"Name? ({i})", "input": "", "output": "Quill."} for i in range(8)],
        "pretrain": [{"text": f"Quill was made by Lumen Labs ({i})."} for i in range(8)],
        "classify": [{"text": f"it was {w}", "label": lab} for lab, w in [("good", "fine"), ("bad", "sad")] * 4],
    }
    for stage in ("reward", "orpo", "simpo"):
        rows[stage] = rows["dpo"]
    rows["ppo"] = rows["grpo"]
    paths = {}
    for stage, records in rows.items():
        paths[stage] = folder / f"{stage}.jsonl"
        paths[stage].write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def reward_run(data_files, tiny_model_dir, tmp_path_factory):
    """One tiny reward model for every PPO pair."""
    import yaml

    from tunelab.train import train

    folder = tmp_path_factory.mktemp("reward-run")
    config = {"model": {"path": str(tiny_model_dir)}, "data": {"path": str(data_files["reward"])},
              "method": {"name": "lora", "r": 4, "alpha": 8}, "output": {"dir": str(folder / "run")},
              "train": {"stage": "reward", "max_steps": 1, "batch_size": 4, "precision": "fp32", "report_to": "none"}}
    (folder / "rm.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(train(load_config(folder / "rm.yaml")).run_dir)


@pytest.mark.parametrize("stage", CHECKED_STAGES)
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_allowed_pair_trains_and_every_refused_pair_says_why(name, stage, data_files, tiny_model_dir,
                                                                  write_config, tmp_path, request):
    extra = {"reward_model": request.getfixturevalue("reward_run")} if stage == "ppo" else {}
    path = write_config(tiny_model_dir, data_files[stage], f"{name}-{stage}",
                        method={"name": name, "trainable_layers": 1, "num_virtual_tokens": 4},
                        train={"stage": stage, "max_steps": 1, "batch_size": 4, "reward": ["length"],
                               "num_generations": 2, "max_new_tokens": 4, **extra})
    reason = unsupported(METHOD_SPECS[name], STAGE_SPECS[stage])
    if reason:
        with pytest.raises(TunelabError, match=rf"method.name '{name}' with train.stage '{stage}'"):
            load_config(path)
        return
    trainer = prepare(load_config(path), tmp_path / "out").trainer
    trainer.train()
    losses = [value for entry in trainer.state.log_history for key, value in entry.items()
              if key == "loss" or key.startswith("loss/")]  # PPO logs loss/policy_avg and loss/value_avg
    assert losses and all(math.isfinite(loss) for loss in losses)


def test_the_documented_matrix_is_the_one_the_config_check_applies():
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "method_stage_matrix.md"
    assert doc.read_text(encoding="utf-8").endswith(support_markdown(METHOD_SPECS, STAGE_SPECS)), \
        "docs/method_stage_matrix.md is stale: regenerate it with `tunelab methods --stages`"
