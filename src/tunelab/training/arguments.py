"""TrainConfig -> transformers.TrainingArguments (one place that knows both vocabularies)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from transformers import TrainingArguments

from tunelab.config import RunConfig
from tunelab.config.train import TrainConfig
from tunelab.config.keys import chosen_backends
from tunelab.config.projection import PROJECTION_OPTIMIZERS
from tunelab.errors import TunelabError, library_errors
from tunelab.methods import METHODS
from tunelab.models import detect_device, resolve_precision
from tunelab.training.distributed import engine_arguments

OPTIMIZERS = {
    "adamw": "adamw_torch_fused",
    "adamw_torch_fused": "adamw_torch_fused",
    "adamw_torch": "adamw_torch",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "adafactor": "adafactor",
    "sgd": "sgd",
    **{name: name for name in PROJECTION_OPTIMIZERS},  # transformers' own GaLore/APOLLO names
}


# Optimizers whose implementation runs on CUDA only, and why.
CUDA_ONLY = {"galore_adamw_8bit": "galore-torch 1.0's 8-bit step calls torch.cuda.synchronize()"}


def check_backends(config: RunConfig) -> None:
    """Fail before loading anything when a chosen option needs a package that is not installed, or a GPU."""
    for key, value, module in chosen_backends(config):
        if importlib.util.find_spec(module) is None:
            raise TunelabError(f"{key}: {value!r} needs the package {module} (pip install {module})")
    optimizer = config.train.optimizer
    if optimizer in CUDA_ONLY and detect_device() != "cuda":
        raise TunelabError(f"train.optimizer: {optimizer!r} needs a CUDA GPU ({CUDA_ONLY[optimizer]}); "
                           "galore_adamw is the same optimizer with 32-bit states")


def _projection_arguments(config: RunConfig) -> dict:
    """GaLore/APOLLO: which modules' gradients are projected, and how (transformers parses `optim_args`)."""
    if config.train.optimizer not in PROJECTION_OPTIMIZERS:
        return {}
    projection = config.train.projection
    return {"optim_target_modules": projection.target_modules, "optim_args": projection.optim_args()}


def training_arguments(config: RunConfig, output_dir: Path, has_eval: bool, packing: bool = False,
                       args_class: type = TrainingArguments, **extra) -> TrainingArguments:
    """`args_class`/`extra`: a TRL config class (a TrainingArguments subclass) and its own settings."""
    train = config.train
    device = detect_device()
    precision = resolve_precision(train.precision, device)
    eval_strategy = "no" if not has_eval else ("steps" if train.eval_steps else "epoch")
    save_strategy, save_steps = ("steps", train.save_steps) if train.save_steps else ("epoch", 500)
    early = train.early_stopping_patience > 0 and has_eval
    if early:  # the Trainer needs checkpoints exactly where it evaluates to restore the best one
        save_strategy, save_steps = eval_strategy, train.eval_steps or save_steps
    settings = dict(
        output_dir=str(output_dir),
        num_train_epochs=train.epochs,
        max_steps=train.max_steps or -1,
        learning_rate=train.lr,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        warmup_steps=train.warmup,
        lr_scheduler_type=train.scheduler,
        weight_decay=train.weight_decay,
        seed=train.seed,
        data_seed=train.seed,
        bf16=precision == "bf16",
        use_cpu=device == "cpu",  # transformers refuses bf16 without a GPU unless the CPU is named
        fp16=precision == "fp16",
        activation_checkpointing=train.gradient_checkpointing,
        logging_steps=train.logging_steps,
        eval_strategy=eval_strategy,
        eval_steps=train.eval_steps or None,
        save_strategy=save_strategy,
        save_steps=save_steps,
        save_total_limit=None,  # pruned by training.guards.CompleteCheckpoints, after the new one is complete
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        optim=OPTIMIZERS[train.optimizer],
        **_projection_arguments(config),
        neftune_noise_alpha=train.neftune_alpha or None,  # the Trainer's own NEFTune hook (TunelabTrainer's when packed)
        max_grad_norm=train.max_grad_norm,
        # TensorBoard and SwanLab go through callbacks of our own choosing (training.callbacks)
        report_to="none" if train.report_to in ("none", "tensorboard", "swanlab") else train.report_to,
        # Packed rows hold no padding, and counting "non_padding" by pad id would skip every EOS (pad == EOS).
        include_num_input_tokens_seen="all" if packing else "non_padding",
        train_sampling_strategy="group_by_length" if _groups_lengths(train, packing) else "random",
        remove_unused_columns=False,
        # DDP's extra graph walk for parameters without a gradient only where a method can leave some.
        ddp_find_unused_parameters=METHODS[config.method.name].unused_parameters,
    )
    library = f"{args_class.__module__.split('.')[0]}.{args_class.__name__}"
    with library_errors(library, config.train.given_keys("train")):
        return args_class(**{**settings, **engine_arguments(config, output_dir), **extra})


def _groups_lengths(train: TrainConfig, packing: bool) -> bool:
    """Unpacked batches waste least padding when similar lengths share a batch. Packed rows hold no padding, so
    they keep random order unless asked: grouped, packed attention runs one SDPA call per group of similar
    lengths (models.attention) and the LoRA bench ran 7% faster, but on the identity demo's small mixed set the
    grouped order cost one held-out answer of ten."""
    return (not packing) if train.group_by_length is None else train.group_by_length
