"""What the libraries under tunelab (TRL, peft, transformers) would refuse from their own argument checks is
refused by tunelab first, in its own keys: one `error:` line, exit 2, no traceback, no weights written."""
import json

import pytest

from tunelab.cli.main import main

ROWS = {
    "sft": [{"instruction": f"Name? ({i})", "output": "Quill."} for i in range(8)],
    "grpo": [{"prompt": f"Say hi ({i})"} for i in range(8)],
    "dpo": [{"prompt": f"Name? ({i})", "chosen": "Quill.", "rejected": "Toaster."} for i in range(8)],
    "kto": [{"prompt": f"Name? ({i})", "completion": "Quill." if i % 2 else "Toaster.", "label": bool(i % 2)}
            for i in range(8)],
}

CASES = {
    "grpo-batch-vs-generations": ("grpo", ["train.stage=grpo", "train.reward=length", "train.batch_size=2"], {},
                                  ["train.num_generations", "train.batch_size (2)", "train.batch_size=4",
                                   "train.num_generations=2"]),
    "grpo-accumulation-counts": ("grpo", ["train.stage=grpo", "train.reward=length", "train.batch_size=1",
                                          "train.grad_accum=3", "train.num_generations=2"], {},
                                 ["train.grad_accum (3)", "= 3 answers per round", "train.batch_size=2"]),
    "grpo-eval-batch": ("grpo", ["train.stage=grpo", "train.reward=length", "train.batch_size=2",
                                 "train.grad_accum=2", "data.val_size=2"], {},
                        ["data.val_size", "train.batch_size (2) x 1 process = 2 answers"]),
    "grpo-processes": ("grpo", ["train.stage=grpo", "train.reward=length", "train.batch_size=1",
                                "train.num_generations=4"], {"WORLD_SIZE": "2"},
                       ["x 2 processes = 2 answers per round", "train.batch_size=2"]),
    "dpo-unknown-loss": ("dpo", ["train.stage=dpo", "train.dpo_loss=sigmoidd"], {}, ["train.dpo_loss", "sigmoid"]),
    "kto-batch-of-one": ("kto", ["train.stage=kto", "train.batch_size=1"], {},
                         ["train.batch_size", "at least 2 examples per batch", "train.grad_accum"]),
    "fsdp-hybrid-sharding": ("sft", ["train.distributed=fsdp", "train.fsdp.sharding=hybrid_shard"], {},
                             ["train.fsdp.sharding", "FSDP1", "full_shard or shard_grad_op"]),
    "prompt-virtual-tokens-past-the-positions": ("sft", ["method.name=prompt", "method.num_virtual_tokens=2040"], {},
                                                 ["method.num_virtual_tokens", "2040 virtual tokens",
                                                  "more than the model's 2048", "train.max_length"]),
    "lora-targets-nothing": ("sft", ["method.target_modules=[q_proj,qkv_proj]"], {},
                             ["method.target_modules", "'qkv_proj'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_library_constraint_is_one_line_in_tunelab_keys(case, tiny_model_dir, write_config, tmp_path, capsys,
                                                        monkeypatch):
    kind, overrides, environment, fragments = CASES[case]
    data = tmp_path / f"{kind}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS[kind]), encoding="utf-8")
    named = [item.split("=", 1)[1] for item in overrides if item.startswith("method.name=")]
    config = write_config(tiny_model_dir, data, case, **({"method": {"name": named[0]}} if named else {}))
    for name, value in environment.items():  # as a rank of a launch reads its config
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["train", str(config), *overrides]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    run = tmp_path / "runs" / case
    assert not (run / "model").exists() and not list(run.glob("checkpoint-*"))


def test_a_library_refusal_tunelab_did_not_foresee_names_the_library_and_the_keys(tiny_model_dir, chat_file,
                                                                                  write_config, tmp_path, monkeypatch):
    """The safety net: any ValueError from building the Trainer's arguments becomes a TunelabError that names
    the library, its words and the keys the user set."""
    from transformers import TrainingArguments

    from tunelab.config import load_config
    from tunelab.errors import TunelabError
    from tunelab.training.arguments import training_arguments

    def refuse(self):
        raise ValueError("a check tunelab does not know about")

    monkeypatch.setattr(TrainingArguments, "__post_init__", refuse)
    config = load_config(write_config(tiny_model_dir, chat_file, "net", train={"lr": 0.5}))
    with pytest.raises(TunelabError) as error:
        training_arguments(config, tmp_path, has_eval=False)
    message = str(error.value)
    assert message.startswith("transformers.TrainingArguments refused the settings made from ")
    assert "train.lr" in message and "a check tunelab does not know about" in message
