"""GRPO through TRL: for each prompt, sample `train.num_generations` answers, score them with the
reward functions named in `train.reward`, and push the policy towards the better ones in each group.
No value model; the KL penalty to the reference (`train.kl_coef`, 0 by default as in TRL) uses the
base with the adapter disabled for peft methods."""
from __future__ import annotations

from tunelab.errors import TunelabError
from tunelab.rewards import reward_function
from tunelab.stages.base import register
from tunelab.stages.trl_base import TrlStage


@register("grpo")
class GrpoStage(TrlStage):
    description = "GRPO: sample a group of answers per prompt, push towards the better-rewarded ones"
    options = ("reward", "num_generations", "max_new_tokens", "temperature", "kl_coef")
    example_kind = "prompt"
    wants = "prompts (a `prompt` column)"
    reward_key = "reward"

    def check_examples(self, examples: list[dict]) -> None:
        super().check_examples(examples)
        if not self.config.train.reward:
            raise TunelabError("train.reward: stage grpo needs at least one reward (e.g. [length] or [regex:...])")
        self.functions = [reward_function(spec) for spec in self.config.train.reward]  # errors before the load

    def tokenize(self, examples, tokenizer):
        rows, stats = super().tokenize(examples, tokenizer)
        return [{**row, **example.get("extra", {})} for row, example in zip(rows, examples)], stats  # reward columns

    columns = ("prompt",)

    def trainer_and_config(self):
        from trl import GRPOConfig, GRPOTrainer

        return GRPOTrainer, GRPOConfig

    def trl_settings(self) -> dict:
        train = self.config.train
        return {"num_generations": train.num_generations, "max_completion_length": train.max_new_tokens,
                "beta": train.kl_coef or 0.0, "temperature": train.temperature,
                "generation_batch_size": train.batch_size}

    def trainer_kwargs(self, model, tokenizer) -> dict:
        return {"reward_funcs": self.functions}
