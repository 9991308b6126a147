"""One test per entry of tunelab.compat: each private or experimental library API we rely on still exists and
behaves as we use it. A pinned library that changes one fails here first, naming it."""
import inspect

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from tunelab import compat


class Recorded(compat.TrainerPrivateHooks, Trainer):
    def __init__(self, *args, **kwargs):
        self.events = []
        super().__init__(*args, **kwargs)

    def saved_model(self, folder):
        self.events.append(("saved", folder.name))

    def writing_checkpoint(self):
        trainer = self

        class Block:
            def __enter__(self):
                trainer.events.append(("checkpoint", trainer.state.global_step))

            def __exit__(self, *exc):
                return False

        return Block()

    def load_checkpoint(self, folder, model):
        self.events.append(("load", folder.name))
        return False  # the Trainer's own load then runs

    def train_sampler(self, sampler):
        self.events.append(("sampler", type(sampler).__name__))
        return sampler


def _tiny_run(tmp_path, **extra):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    rows = [{"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]} for _ in range(4)]
    args = TrainingArguments(str(tmp_path), max_steps=2, save_steps=1, per_device_train_batch_size=2,
                             report_to=[], use_cpu=True, logging_steps=1, save_strategy="steps")
    return Recorded(model=model, args=args, train_dataset=rows, **extra)


def test_the_trainer_private_hooks_are_called_as_we_use_them(tmp_path):
    """_save_checkpoint wraps each checkpoint write, _save reports each saved model folder, and resuming goes
    through _load_from_checkpoint with the checkpoint folder."""
    trainer = _tiny_run(tmp_path)
    trainer.train()
    assert ("checkpoint", 1) in trainer.events and ("checkpoint", 2) in trainer.events
    assert ("saved", "checkpoint-1") in trainer.events and ("saved", "checkpoint-2") in trainer.events
    trainer.save_model(str(tmp_path / "final"))
    assert trainer.events[-1] == ("saved", "final")
    again = _tiny_run(tmp_path)
    again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    assert ("load", "checkpoint-1") in again.events
    assert ("sampler", "RandomSampler") in trainer.events  # the data loader's sampler passes through ours
    for name, params in {"_save": ["output_dir", "state_dict"], "_save_checkpoint": ["model", "trial"],
                         "_load_from_checkpoint": ["resume_from_checkpoint", "model"],
                         "_get_train_sampler": ["train_dataset"]}.items():
        assert list(inspect.signature(getattr(Trainer, name)).parameters)[1:] == params, name


def test_grpo_generates_through_the_private_turn_method():
    from trl import GRPOTrainer

    assert "_generate_single_turn" in vars(GRPOTrainer)
    assert "self._generate_single_turn(" in inspect.getsource(GRPOTrainer._generate)
    assert issubclass(type("Hooked", (compat.GrpoGenerationHook, GRPOTrainer), {}), GRPOTrainer)


def test_the_attention_field_selects_the_implementation():
    config = LlamaConfig(num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2)
    setattr(config, compat.ATTENTION_FIELD, "eager")
    assert config._attn_implementation == "eager"


@pytest.mark.parametrize("module, names", [("orpo", ("ORPOTrainer", "ORPOConfig")),
                                           ("cpo", ("CPOTrainer", "CPOConfig")),
                                           ("ppo", ("PPOTrainer", "PPOConfig"))])
def test_trl_experimental_trainers_are_where_we_import_them(module, names):
    trainer, config = compat.trl_experimental(module, *names)
    assert trainer.__name__ == names[0] and config.__name__ == names[1]


def test_transformers_gguf_table_lists_the_architectures():
    mapping = compat.gguf_config_mapping()
    assert {"llama", "qwen2", "general"} <= set(mapping)


def test_no_trainer_private_method_is_overridden_outside_compat():
    import ast
    from pathlib import Path

    from trl import DPOTrainer, GRPOTrainer, KTOTrainer, RewardTrainer

    trainers = [Trainer, DPOTrainer, GRPOTrainer, KTOTrainer, RewardTrainer,
                *(compat.trl_experimental(module, name)[0] for module, name in
                  [("orpo", "ORPOTrainer"), ("cpo", "CPOTrainer"), ("ppo", "PPOTrainer")])]
    private = {name for cls in trainers for klass in cls.__mro__ for name in vars(klass)
               if name.startswith("_") and not name.startswith("__")}
    package = Path(compat.__file__).parent
    found = [f"{path.relative_to(package)}:{item.lineno} {node.name}.{item.name}"
             for path in package.rglob("*.py") if path.name != "compat.py"
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.ClassDef)
             for item in node.body if isinstance(item, ast.FunctionDef) and item.name in private]
    assert not found, f"Trainer private methods overridden outside tunelab/compat.py: {found}"
