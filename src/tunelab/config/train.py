"""`train:` section — the stage and the optimisation hyperparameters."""
from typing import Annotated, Literal

from pydantic import Field, field_validator

from tunelab.config.base import ADVANCED, CACHE_KEY, FORM, FREE, Section, backends
from tunelab.config.distributed import ENGINES, DeepSpeedOptions, FsdpOptions
from tunelab.config.projection import PROJECTION_OPTIMIZERS, ProjectionOptions
from tunelab.specs.stages import STAGE_SPECS


OPTIMIZERS = ("adamw", "adamw_torch_fused", "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "adafactor", "sgd",
              *PROJECTION_OPTIMIZERS)

# trl 1.12 DPOConfig.loss_type: what its DPOTrainer computes (it names an unknown one only mid-training).
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


class TrainConfig(Section):
    stage: str = Field("sft", json_schema_extra=CACHE_KEY, description="Training stage (a name in the stage registry).")
    epochs: float = Field(3.0, json_schema_extra=FORM, gt=0, description="Passes over the training data (train.max_steps wins when set).")
    max_steps: int = Field(0, json_schema_extra=FORM, ge=0, description="Overrides epochs when > 0.")
    lr: float = Field(2e-4, json_schema_extra=FORM, gt=0, description="Peak learning rate.")
    batch_size: int = Field(8, json_schema_extra=FORM, gt=0, description="Examples per optimizer step per device, before grad_accum.")
    grad_accum: int = Field(1, json_schema_extra=FORM, gt=0, description="Batches whose gradients are summed before each optimizer step.")
    max_length: int = Field(1024, gt=8, json_schema_extra={**CACHE_KEY, **FORM}, description="Longest tokenized example; longer ones are cut at turns.")
    max_samples: int = Field(0, ge=0, json_schema_extra={**CACHE_KEY, **ADVANCED}, description="At most this many examples from each data source (each dataset name, data.mix source or file), the first in file order, before mixing and the validation split (0: all).")
    warmup: float = Field(0.0, json_schema_extra=FORM, ge=0, description="Warm-up: ratio of steps (<1) or a step count (>=1).")
    scheduler: Literal["linear", "cosine", "cosine_with_restarts", "constant"] = Field(
        "cosine", json_schema_extra=FORM, description="Learning-rate schedule after warm-up.")
    weight_decay: float = Field(0.0, json_schema_extra=ADVANCED, ge=0, description="AdamW weight decay.")
    seed: int = Field(42, json_schema_extra=ADVANCED, description="Seed of the initialisation, the data order and the split.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", json_schema_extra=FORM, description="auto: bf16 on CPUs/GPUs that support it, else fp32 (TUNELAB_CPU_BF16=0 makes a CPU "
        "with native bf16 take the path of one without).")
    packing: bool = Field(True, json_schema_extra=FORM, description="Lay each batch's examples end to end in one row, no padding "
                          "(turned off automatically for methods that add virtual tokens).")
    group_by_length: bool | None = Field(None, json_schema_extra=ADVANCED, description="Batch examples of similar "
                                         "length together (unset: on for unpacked runs, where it saves padding; off for "
                                         "packed ones, whose batches stay in random order). On with packing, attention runs "
                                         "fewer, larger calls (~7% faster on the LoRA bench), but batches are less mixed.")
    piece_tokens: Annotated[int, Field(ge=0)] | Literal["auto"] = Field("auto", description="A packed batch runs forward and backward "
                                                "in pieces of at most max(piece_tokens, max_length) tokens, gradients "
                                                "accumulated: peak activation memory follows it, not batch_size; larger "
                                                "pieces run fewer, larger kernels. auto: sized after the first step so one "
                                                "piece's activations take at most 1/12 of the free memory; 0: the whole "
                                                "batch at once.")
    gradient_checkpointing: bool = Field(False, json_schema_extra=ADVANCED, description="Recompute activations in the backward pass: less "
                                         "memory, ~1/3 more compute.")
    logging_steps: int = Field(5, gt=0, json_schema_extra={**FREE, **ADVANCED}, description="Log a progress line and metrics "
                               "every N steps.")
    eval_steps: int = Field(0, json_schema_extra=ADVANCED, ge=0, description="Evaluate every N steps (0: once per epoch when val data).")
    save_steps: int = Field(0, ge=0, json_schema_extra={**FREE, **ADVANCED},
                            description="Checkpoint every N steps (0: at the end of every epoch).")
    save_total_limit: int | None = Field(2, ge=1, json_schema_extra={**FREE, **ADVANCED}, description="Complete checkpoints kept (older ones are pruned "
                                         "only after a newer one is complete).")
    resume: bool | str = Field(False, json_schema_extra=FREE, description="Continue from the newest complete checkpoint in output.dir "
                               "(true) or from this checkpoint directory; a finished run is left as it is.")
    max_bad_steps: int = Field(5, ge=1, json_schema_extra=FREE, description="Consecutive steps with non-finite loss or gradients "
                               "(each skipped) before training stops with an error.")
    early_stopping_patience: int = Field(0, json_schema_extra=ADVANCED, ge=0, description="Evaluations without improvement (0: off).")
    optimizer: Literal[OPTIMIZERS] = Field(
        "adamw", json_schema_extra={**ADVANCED, **backends(adamw_8bit="bitsandbytes", paged_adamw_8bit="bitsandbytes",
                                                           **PROJECTION_OPTIMIZERS)},
        description="adamw: torch's fused AdamW (adamw_torch_fused, its transformers name; adamw_torch: unfused). The "
        "8-bit ones need bitsandbytes; galore_*/apollo_*: GaLore/APOLLO low-rank gradient projection (method.name "
        "full or freeze; settings in train.projection; packages galore-torch/apollo-torch).")
    projection: ProjectionOptions = Field(default_factory=ProjectionOptions)
    max_grad_norm: float = Field(1.0, json_schema_extra=ADVANCED, ge=0, description="Gradient clipping norm (0: off).")
    neftune_alpha: float | None = Field(None, ge=0, description="NEFTune: uniform noise of at most "
                                        "alpha/sqrt(length x width) on the input embeddings while training, none in "
                                        "evaluation (the paper uses 5-15; unset or 0: off). Not with ppo/grpo: they sample "
                                        "answers from the policy they train (and PPO runs its own loop).")
    report_to: Literal["none", "tensorboard", "wandb", "mlflow", "swanlab"] = Field(
        "tensorboard", json_schema_extra={**FREE, **ADVANCED, **backends(wandb="wandb", mlflow="mlflow", swanlab="swanlab")},
        description="Where metrics go besides RUN/metrics.jsonl (swanlab: SWANLAB_MODE=offline keeps the run in "
        "RUN/swanlog, or SWANLAB_LOG_DIR, for `swanlab sync`).")
    num_threads: int = Field(0, ge=0, json_schema_extra={**FREE, **ADVANCED}, description="CPU threads for torch (0: all cores).")
    distributed: Literal[ENGINES] = Field("ddp", json_schema_extra=backends(deepspeed_zero2="deepspeed", deepspeed_zero3="deepspeed"), description="Engine across processes (used when launched "
                                          "with several): ddp, fsdp, deepspeed_zero2, deepspeed_zero3.")
    fsdp: FsdpOptions = Field(default_factory=FsdpOptions)
    deepspeed: DeepSpeedOptions = Field(default_factory=DeepSpeedOptions)

    beta: float = Field(0.1, gt=0, description="dpo/orpo/simpo/kto: strength of the preference loss "
                        "(DPO: how far from the reference; ORPO: weight of the odds-ratio term).")
    dpo_loss: Literal[DPO_LOSSES] = Field("sigmoid", description="dpo: TRL's loss type (sigmoid, ipo, hinge, "
                                          "robust, ...).")
    simpo_gamma: float = Field(0.5, ge=0, description="simpo: target reward margin.")
    reward: list[str] = Field(default_factory=list, description="grpo: reward functions (length, exact_match, "
                              "json_valid, regex:<pattern>, python:module:function); ppo: see reward_model.")
    num_generations: int = Field(4, ge=2, description="grpo: answers sampled per prompt (a group).")
    max_new_tokens: int = Field(64, gt=0, description="grpo/ppo: longest sampled answer in tokens.")
    temperature: float = Field(1.0, gt=0, description="grpo/ppo: sampling temperature.")
    kl_coef: float | None = Field(None, ge=0, description="grpo/ppo: KL penalty to the reference policy "
                                  "(default: TRL's, 0 for grpo, 0.05 for ppo).")
    reward_model: str | None = Field(None, description="ppo: run directory of a train.stage reward run.")

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, value: str) -> str:
        return STAGE_SPECS.check(value)  # the registry is the single source of valid names
