"""Stages trained by a TRL trainer (preference optimisation, reward models, RL).

TRL is pinned (1.12.0: the newest release that still ships PPO, under trl.experimental) and its
experimental imports stay in the stage modules that need them. A stage here only says which TRL
trainer and config to use and which of its settings come from `train.*`; everything else is shared:
the canonical examples go to TRL as a datasets.Dataset (TRL tokenizes with the run's chat template),
the method's hooks (loss terms, LoRA+ learning rates, own checkpoint format) are mixed into the
trainer, and the reference model is never a second copy: peft methods disable their adapter (TRL
does that itself), every other method starts as the base, so its reference log-probabilities are
computed once before the first step.
"""
from __future__ import annotations

from tunelab.data.tokenize import TokenizeStats
from tunelab.stages.base import Stage
from tunelab.errors import library_errors
from tunelab.training.arguments import training_arguments
from tunelab.training.hooks import TrlLossTerms, method_hooks


def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


class TrlStage(Stage):
    columns: tuple[str, ...] = ()
    sampling = "random"          # the Trainer's train_sampling_strategy

    def trainer_and_config(self):
        """(TRL trainer class, TRL config class)."""
        raise NotImplementedError

    def trl_settings(self) -> dict:
        """The TRL config fields this stage takes from train.*."""
        return {"max_length": self.config.train.max_length}

    def trainer_kwargs(self, model, tokenizer) -> dict:
        """Further arguments of the TRL trainer (GRPO's reward functions, PPO's reward and value models)."""
        return {}

    def trl_tokenizer(self, model, tokenizer, rows: list[dict]):
        """The tokenizer TRL gets (RL stages: a copy that stops where the template ends an answer). The run keeps
        and saves its own."""
        return tokenizer

    def summary(self, trainer) -> dict:
        """The last logged value of each TRL metric (`rewards/margins`, `rewards/accuracies`, `logps/chosen`...)."""
        last = {}
        for entry in trainer.state.log_history:
            last.update({key: value for key, value in entry.items() if "/" in key})
        return {**last, **(self.reward_curve(trainer) if self.reward_key else {})}

    reward_key: str | None = None  # RL stages: the logged per-step reward, reported as mean_reward/reward_curve

    def reward_curve(self, trainer) -> dict:
        curve = [entry[self.reward_key] for entry in trainer.state.log_history if self.reward_key in entry]
        return {"mean_reward": curve[-1], "reward_curve": curve} if curve else {}

    def tokenize(self, examples, tokenizer):
        stats = TokenizeStats(kept=len(examples))
        return [{key: example[key] for key in self.columns} for example in examples], stats

    def build_trainer(self, model, tokenizer, method, train_rows, val_rows, callbacks, output_dir, packing: bool):
        from datasets import Dataset

        trainer_class, config_class = self.trainer_and_config()
        settings = self.trl_settings()
        if self.uses_reference and not is_peft(model):
            settings["precompute_ref_log_probs"] = True  # the model starts as the base: its log-probs are the ref's
        args = training_arguments(self.config, output_dir, has_eval=bool(val_rows), args_class=config_class,
                                  train_sampling_strategy=self.sampling, include_num_input_tokens_seen="no", **settings)
        mixed = type(f"Tunelab{trainer_class.__name__}", (TrlLossTerms, trainer_class), {})
        extra = self.trainer_kwargs(model, tokenizer)
        self.own_ids = _aligned_ids(model, tokenizer)  # what the run saves, whatever TRL's copy makes of them
        tokenizer = self.trl_tokenizer(model, tokenizer, train_rows)
        with library_errors(f"trl.{trainer_class.__name__}", self.config.train.given_keys("train")):
            trainer = mixed(model=model, args=args, train_dataset=Dataset.from_list(train_rows),
                            eval_dataset=Dataset.from_list(val_rows) if val_rows else None, processing_class=tokenizer,
                            callbacks=callbacks, **method_hooks(method, model), **extra)
        if not args.bf16:
            _keep_trainable_in_fp32(trainer.model)
        return trainer

    own_ids: tuple | None = None

    def trained_model(self, trainer):
        """The Trainer (and TRL's PPO) align the model's config and generation_config with the tokenizer they are
        given; when that is a stopping/padding copy, the saved model gets back the ids the run's own tokenizer gives."""
        model = self.policy(trainer)
        if self.own_ids is not None:
            _restore_ids(model, self.own_ids)
        return model

    def policy(self, trainer):
        return trainer.model



SPECIAL_IDS = ("eos_token_id", "bos_token_id", "pad_token_id")


def _aligned_ids(model, tokenizer) -> tuple:
    """The model's special ids as the Trainer leaves them with the run's own tokenizer (config, generation_config)."""
    import copy

    from transformers.trainer_utils import align_special_tokens

    align_special_tokens(model, tokenizer)
    config = model.config.get_text_config()
    generation = getattr(model, "generation_config", None)
    return ({name: copy.deepcopy(getattr(config, name, None)) for name in SPECIAL_IDS},
            None if generation is None else {name: copy.deepcopy(getattr(generation, name, None))
                                             for name in SPECIAL_IDS})


def _restore_ids(model, ids: tuple) -> None:
    config, generation = ids
    for name, value in config.items():
        setattr(model.config.get_text_config(), name, value)
    if generation is not None and getattr(model, "generation_config", None) is not None:
        for name, value in generation.items():
            setattr(model.generation_config, name, value)


def _keep_trainable_in_fp32(model) -> None:
    """TRL casts the trainable parameters of a quantized (QLoRA) model to bf16 whatever the run's precision.
    Without bf16 training that breaks a new head (fp32 activations meet a bf16 score layer) and, on CPUs
    without bf16 units, makes every adapter matmul emulated; the run's precision decides instead."""
    import torch

    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype == torch.bfloat16:
            parameter.data = parameter.data.float()
