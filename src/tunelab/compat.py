"""Every use of a library's private or experimental API, in one place, each with a test
(tests/test_compat.py) that fails loudly when a pinned library changes it.

Public hooks are used wherever they suffice: the Trainer's callbacks (`on_save` writes the trainable state of a
checkpoint), `compute_loss`, `create_optimizer`, `log`, `add_callback`. What is left has no public hook:

- `TrainerPrivateHooks`: the Trainer's `_save` (also run for `save_model` of sharded weights, where a method's
  own files must follow the gathered weights), `_save_checkpoint` (the frozen bf16 weights must hold their
  original values *while* a checkpoint is written) and `_load_from_checkpoint` (a method whose saved format cannot
  restart training resumes from its raw tensors instead), `_get_train_sampler` (the length-grouped sampler
  draws from the global RNG, so a resumed run would not repeat the order). Each calls a public-named method of ours.
- `GrpoGenerationHook`: TRL's GRPOTrainer cuts completions after its one EOS id in `_generate_single_turn`.
- `ATTENTION_FIELD`: a model config's `_attn_implementation_internal`, switched for packed training (transformers
  has `set_attn_implementation`, but it checks the name against its own table and rewrites sub-configs).
- `trl_experimental(module, *names)`: ORPO, CPO (SimPO) and PPO live under `trl.experimental` in TRL 1.12.
- `gguf_config_mapping()`: transformers' GGUF -> config key table (`transformers.integrations.ggml`).
"""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

ATTENTION_FIELD = "_attn_implementation_internal"


class TrainerPrivateHooks:
    """Mix in before a transformers/TRL Trainer class; override the public-named methods, never the private ones."""

    def _save(self, output_dir=None, state_dict=None):
        super()._save(output_dir, state_dict=state_dict)
        self.saved_model(Path(output_dir or self.args.output_dir))

    def _save_checkpoint(self, model, trial):
        with self.writing_checkpoint():
            super()._save_checkpoint(model, trial)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if not self.load_checkpoint(Path(resume_from_checkpoint), model or self.model):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _get_train_sampler(self, *args, **kwargs):
        return self.train_sampler(super()._get_train_sampler(*args, **kwargs))

    def train_sampler(self, sampler):
        """The sampler the Trainer would use for the training data (None for an iterable dataset): keep or replace."""
        return sampler

    def saved_model(self, folder: Path) -> None:
        """After the Trainer wrote a model (checkpoint or save_model) to `folder`."""

    def writing_checkpoint(self):
        """A context the Trainer writes each checkpoint in."""
        return contextlib.nullcontext()

    def load_checkpoint(self, folder: Path, model) -> bool:
        """Restore `model` from checkpoint `folder` on resume; False: the Trainer's own load does it."""
        return False


class GrpoGenerationHook:
    """Mix in before TRL's GRPOTrainer: `completions_generated` sees (and may cut) each batch of completions."""

    def _generate_single_turn(self, *args, **kwargs):
        completions, logprobs = super()._generate_single_turn(*args, **kwargs)
        return self.completions_generated(completions, logprobs)

    def completions_generated(self, completions: list, logprobs: list | None) -> tuple[list, list | None]:
        return completions, logprobs


def trl_experimental(module: str, *names: str) -> tuple:
    """`names` from `trl.experimental.<module>` (e.g. "ppo", "PPOConfig", "PPOTrainer")."""
    imported = importlib.import_module(f"trl.experimental.{module}")
    return tuple(getattr(imported, name) for name in names)


def gguf_config_mapping() -> dict:
    """transformers' table of GGUF metadata keys -> config keys, per architecture."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return GGUF_CONFIG_MAPPING
