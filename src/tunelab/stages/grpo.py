"""GRPO through TRL: for each prompt, sample `train.num_generations` answers, score them with the
reward functions named in `train.reward`, and push the policy towards the better ones in each group.
No value model; the KL penalty to the reference (`train.kl_coef`, 0 by default as in TRL) uses the
base with the adapter disabled for peft methods."""
from __future__ import annotations


from tunelab.compat import GrpoGenerationHook
from tunelab.data.stops import cut_after_stop, stop_token_ids, with_end_of_turn_as_eos
from tunelab.errors import TunelabError
from tunelab.rewards import reward_function
from tunelab.stages.base import register
from tunelab.stages.trl_base import TrlStage


@register("grpo")
class GrpoStage(TrlStage):
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

        return type("StoppingGRPOTrainer", (StopsOnEveryStopId, GrpoGenerationHook, GRPOTrainer), {}), GRPOConfig

    def trl_tokenizer(self, model, tokenizer, rows):
        return with_end_of_turn_as_eos(tokenizer)

    def build_trainer(self, model, tokenizer, method, train_rows, val_rows, callbacks, output_dir, packing: bool):
        stops = stop_token_ids(tokenizer, getattr(model, "generation_config", None))  # before TRL aligns the config
        trainer = super().build_trainer(model, tokenizer, method, train_rows, val_rows, callbacks, output_dir, packing)
        trainer.use_stop_ids(stops)
        return trainer

    def trl_settings(self) -> dict:
        train = self.config.train
        # TRL's own round: batch_size x grad_accum x processes answers, generated once per optimizer step.
        return {"num_generations": train.num_generations, "max_completion_length": train.max_new_tokens,
                "beta": train.kl_coef or 0.0, "temperature": train.temperature}

    def trainer_kwargs(self, model, tokenizer) -> dict:
        return {"reward_funcs": self.functions}


class StopsOnEveryStopId:
    """Mixed into TRL's GRPOTrainer, which generates until, and cuts each completion after, the tokenizer's one
    `eos_token_id`. A chat model ends its answer with the template's end-of-turn token (the tokenizer TRL gets has
    it as EOS: `trl_tokenizer`), and its generation_config may list more ids (Llama 3.1: three). Here generation
    stops on every stop id and each completion is cut after the first one, so the pad tokens that follow a stop
    are neither rewarded nor trained (through tunelab.compat's hook on TRL's private generation method)."""

    stop_ids: list[int] = []

    def use_stop_ids(self, ids: list[int]) -> None:
        self.stop_ids = list(ids)
        if not self.use_vllm:
            self.generation_kwargs["eos_token_id"] = self.stop_ids
            self.generation_config.eos_token_id = self.stop_ids

    def completions_generated(self, completions: list, logprobs: list | None) -> tuple[list, list | None]:
        stops = set(self.stop_ids)
        ends = [cut_after_stop(list(ids), stops) for ids in completions]
        completions = [list(ids)[:end] for ids, end in zip(completions, ends)]
        if logprobs is not None:
            logprobs = [list(row)[:end] for row, end in zip(logprobs, ends)]
        return completions, logprobs
