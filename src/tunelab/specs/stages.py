"""The training stages: what data each takes, which train.* keys it reads beyond the common ones, what it can
do, and what in a config its library would refuse. The training code is in tunelab.stages."""
from __future__ import annotations

import math
from dataclasses import replace

from tunelab.registry import Registry
from tunelab.specs.base import StageCaps, StageSpec

STAGE_SPECS: Registry[StageSpec] = Registry("stage")

TRL = StageCaps(supports_packing=False,    # TRL builds its own batches
                supports_streaming=False,
                cache_rows=False,          # rows are the canonical examples; TRL tokenizes them
                uses_trl=True, aligned_logits=True)
PAIRS = {"example_kind": "chosen", "wants": "preference pairs (prompt, chosen, rejected)"}
PROMPTS = {"example_kind": "prompt", "wants": "prompts (a `prompt` column)"}
# NEFTune (the Trainer's hook on the input embeddings) where every forward in train mode is one that learns: not
# ppo/grpo, which sample answers from the policy they train (PPO in a loop of its own, where the hook is never set).
NEFTUNE = ("neftune_alpha",)


def grpo_settings_problem(config, world_size: int) -> str | None:
    """TRL samples batch_size x grad_accum x processes answers per round, whole groups of num_generations
    each (GRPOConfig refuses anything else); with held-out data, eval batches of batch_size x processes too."""
    train = config.train
    generations = train.num_generations
    per_round = train.batch_size * train.grad_accum * world_size
    processes = f"{world_size} processes" if world_size > 1 else "1 process"
    if per_round % generations:
        fits = [n for n in range(2, generations) if per_round % n == 0]
        other = f" or train.num_generations={fits[-1]}" if fits else ""
        return (f"train.num_generations: stage grpo samples train.batch_size ({train.batch_size}) x "
                f"train.grad_accum ({train.grad_accum}) x {processes} = {per_round} answers per round, which "
                f"must be whole groups of train.num_generations ({generations}); use e.g. "
                f"train.batch_size={_fitting_batch(train.batch_size, train.grad_accum * world_size, generations)}"
                f"{other}")
    per_eval = train.batch_size * world_size
    if config.data.val_size and per_eval % generations:
        return (f"train.num_generations: with held-out data (data.val_size) stage grpo evaluates "
                f"train.batch_size ({train.batch_size}) x {processes} = {per_eval} answers at a time, which "
                f"must be whole groups of train.num_generations ({generations}); use e.g. "
                f"train.batch_size={_fitting_batch(train.batch_size, world_size, generations)}, or data.val_size=0")
    return None


def _fitting_batch(batch_size: int, multiplier: int, generations: int) -> int:
    """The smallest batch size >= `batch_size` whose product with `multiplier` is whole groups of `generations`."""
    step = generations // math.gcd(generations, multiplier)
    return math.ceil(batch_size / step) * step


def kto_settings_problem(config, world_size: int) -> str | None:
    """TRL's KTOTrainer estimates the KL term from the other examples of the same (per-process) batch."""
    if config.train.batch_size < 2:
        return (f"train.batch_size: stage kto estimates its KL term from the other answers in each batch, so "
                f"it needs at least 2 examples per batch (got {config.train.batch_size}); raise "
                "train.grad_accum instead of lowering train.batch_size to save memory")
    return None


def _add(*specs: StageSpec) -> None:
    for spec in specs:
        STAGE_SPECS[spec.name] = spec


_add(
    StageSpec("pretrain", "continued pretraining: loss on every token of plain text", example_kind="text",
              wants="plain text", options=NEFTUNE, caps=StageCaps(uses_template=False)),
    StageSpec("sft", "SFT: supervised fine-tuning, loss on the assistant's turns", NEFTUNE, data_options=("train_on",)),
    StageSpec("classify", "classification: a label head on text (accuracy, macro-F1)", NEFTUNE, example_kind="label",
              wants="classification data (text and label)",
              caps=StageCaps(uses_template=False, head="sequence-classification", eval_kind="labels",
                             supports_packing=False,  # one example per row: the head reads the example's last token
                             default_val_size=0.1,
                             cache_rows=False)),      # one label per row; tokenizing plain text is quick anyway
    StageSpec("reward", "reward model: a scalar head that scores the chosen answer above the rejected one", NEFTUNE,
              **PAIRS,
              caps=replace(TRL, head="sequence-classification", eval_kind=None, default_val_size=0.1,
                           aligned_logits=False)),  # one score per sequence: the head-support rule applies instead
    StageSpec("dpo", "DPO: prefer the chosen answer over the rejected one, relative to the base",
              ("beta", "dpo_loss", *NEFTUNE), **PAIRS, caps=replace(TRL, uses_reference=True)),
    StageSpec("orpo", "ORPO: SFT on the chosen answer plus an odds-ratio preference term, no reference model",
              ("beta", *NEFTUNE), **PAIRS, caps=TRL),
    StageSpec("simpo", "SimPO: length-normalised preference with a target margin, no reference model",
              ("beta", "simpo_gamma", *NEFTUNE), **PAIRS, caps=TRL),
    StageSpec("kto", "KTO: unpaired good/bad answers (prompt, completion, label) against the base", ("beta", *NEFTUNE),
              example_kind="completion", wants="unpaired feedback (prompt, completion, label)",
              caps=replace(TRL, uses_reference=True), settings_problem=kto_settings_problem),
    StageSpec("ppo", "PPO: sample answers to prompts, score them with a reward-model run, optimise with a value head",
              ("reward_model", "max_new_tokens", "temperature", "kl_coef"), **PROMPTS,
              caps=replace(TRL, owns_loop=True,
                           supports_resume=False,  # TRL's PPOTrainer.train() takes no checkpoint to resume from
                           evaluates=False)),  # TRL's PPO reports on its own sampled generations, not evaluate()
    StageSpec("grpo", "GRPO: sample a group of answers per prompt, push towards the better-rewarded ones",
              ("reward", "num_generations", "max_new_tokens", "temperature", "kl_coef"), **PROMPTS, caps=TRL,
              settings_problem=grpo_settings_problem),
)
