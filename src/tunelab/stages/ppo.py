"""PPO against a reward model (the seeds' SFT -> reward model -> PPO chain) through TRL 1.12's
experimental PPOTrainer.

`train.reward_model` names a run directory trained with `train.stage: reward`; it is loaded merged
(a plain scalar-head model) and a copy of it starts the value model, as in TRL's examples. With a
peft method the reference policy is the base with the adapter disabled (no copy); other methods get
TRL's frozen copy of the starting policy. TRL's PPO owns its training loop, so methods that add loss
terms are rejected when the config is read (tunelab.specs.support).
"""
from __future__ import annotations

import copy
import time

from transformers.trainer_utils import TrainOutput

from tunelab.compat import trl_experimental
from tunelab.data.stops import stop_token_ids, with_end_of_turn_as_eos
from tunelab.data.templates import render_conversation
from tunelab.data.tokenize import TokenizeStats
from tunelab.errors import TunelabError
from tunelab.stages.base import register
from tunelab.stages.trl_base import TrlStage

DEFAULT_KL = 0.05  # TRL's default KL coefficient for PPO


@register("ppo")
class PpoStage(TrlStage):
    reward_key = "objective/scores"  # the reward model's score of each step's samples

    def check_examples(self, examples: list[dict]) -> None:
        super().check_examples(examples)
        self.reward_run = _reward_run(self.config.train.reward_model)

    def tokenize(self, examples, tokenizer):
        """Prompt token ids ending with the assistant's generation prompt (the last max_length tokens)."""
        stats, rows = TokenizeStats(), []
        for example in examples:
            text = render_conversation(tokenizer, example["prompt"], add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            stats.truncated += len(ids) > self.config.train.max_length
            ids = ids[-self.config.train.max_length:]
            stats.kept, stats.tokens = stats.kept + 1, stats.tokens + len(ids)
            rows.append({"input_ids": ids})
        return rows, stats

    def trainer_and_config(self):
        return trl_experimental("ppo", "PPOTrainer", "PPOConfig")

    def trl_settings(self) -> dict:
        train = self.config.train
        episodes = train.max_steps * train.batch_size * train.grad_accum if train.max_steps else None
        return {"response_length": train.max_new_tokens, "temperature": train.temperature,
                "kl_coef": DEFAULT_KL if train.kl_coef is None else train.kl_coef, "total_episodes": episodes,
                "stop_token": "eos", "num_ppo_epochs": 1, "num_mini_batches": 1, "num_sample_generations": 0}

    def trainer_kwargs(self, model, tokenizer) -> dict:
        from tunelab.data.cache import tokenizer_fingerprint
        from tunelab.runs import load_run

        loaded = load_run(self.reward_run, model.dtype)
        if tokenizer_fingerprint(loaded.tokenizer) != tokenizer_fingerprint(tokenizer):
            raise TunelabError(f"train.reward_model {self.config.train.reward_model}: its tokenizer differs from the "
                               "policy's; PPO scores the policy's tokens, so both must share one tokenizer")
        reward = loaded.method.merge(loaded.model) if loaded.method else loaded.model
        reward.requires_grad_(False)
        value = copy.deepcopy(reward).requires_grad_(True)
        return {"reward_model": reward.eval(), "value_model": value, "ref_model": None}

    def trl_tokenizer(self, model, tokenizer, rows):
        """TRL's PPO cuts each answer after the tokenizer's EOS (`stop_token: eos`): the copy's EOS is the token the
        template ends an answer with. Its pad is a token no prompt uses and it pads on the left."""
        stops = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
        copied = _with_unused_pad(with_end_of_turn_as_eos(tokenizer), rows, stops)
        copied.padding_side = "left"  # TRL's PPO generates after the prompt batch: prompts must end together
        return copied

    def build_trainer(self, model, tokenizer, method, train_rows, val_rows, callbacks, output_dir, packing: bool):
        # TRL's PPO samples from an evaluation set for its own reports; the training prompts serve when none is held out.
        return super().build_trainer(model, tokenizer, method, train_rows, val_rows or train_rows[:1], callbacks,
                                     output_dir, packing)

    def train(self, trainer, checkpoint=None) -> TrainOutput:
        start = time.perf_counter()
        trainer.train()
        losses = [e["loss/policy_avg"] for e in trainer.state.log_history if "loss/policy_avg" in e]
        return TrainOutput(trainer.state.global_step, losses[-1] if losses else float("nan"),
                           {"train_runtime": time.perf_counter() - start})

    def policy(self, trainer):
        return trainer.policy_model


def _with_unused_pad(tokenizer, rows: list[dict], stops=()):
    """TRL's PPO rebuilds attention masks as `ids != pad_token_id`. Chat models often pad with their end-of-turn
    token (SmolLM2: <|im_end|>), which every prompt contains, so the reference and value passes would skip real
    tokens and the KL would be large from the first step. Give PPO a copy of the tokenizer whose pad is a special
    token no prompt uses and that is not a stop id (always a copy: PPO also pads on the left)."""
    used = {token for row in rows for token in row["input_ids"]}
    free = tokenizer.pad_token_id not in used
    if free and tokenizer.pad_token_id not in stops:
        return copy.deepcopy(tokenizer)
    candidates = [tokenizer.unk_token, *tokenizer.all_special_tokens]
    for token in candidates:
        token_id = tokenizer.convert_tokens_to_ids(token) if token else None
        if token_id is not None and token_id not in used and token_id != tokenizer.eos_token_id \
                and token_id not in stops:
            copied = copy.deepcopy(tokenizer)
            copied.pad_token = token
            return copied
    if free and tokenizer.pad_token_id != tokenizer.eos_token_id:  # another stop id (TRL cuts at EOS only)
        return copy.deepcopy(tokenizer)
    raise TunelabError("train.stage ppo: the tokenizer's pad token appears in the prompts and it has no unused special "
                       "token to pad with instead; add a pad token to the tokenizer")


def _reward_run(path: str | None):
    from tunelab.runs import find_run

    if not path:
        raise TunelabError("train.reward_model: stage ppo needs the run directory of a train.stage reward run")
    ref = find_run(path)
    if ref is None or ref.config.train.stage != "reward":
        raise TunelabError(f"train.reward_model {path}: not a run directory trained with train.stage reward")
    return ref
