"""What LLaMA-Factory and axolotl configs share: how they write booleans and lists, and the transformers
TrainingArguments keys both pass through (scheduler, optimizer names, warm-up, resume, DeepSpeed and FSDP)."""
from __future__ import annotations

import json
from pathlib import Path

from tunelab.config.foreign.rules import Context, Refuse, To, Unsupported, Via


def as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def switch(target: str, setting):
    """A yes/no key that, when yes, sets one tunelab key to `setting` (and asks for nothing when no)."""
    def convert(value, ctx: Context) -> str | None:
        if as_bool(value):
            ctx.set(target, setting)
            return None
        return "off"
    return convert


def name_list(value) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


SCHEDULERS = {"linear": "linear", "cosine": "cosine", "cosine_with_restarts": "cosine_with_restarts",
              "constant": "constant", "constant_with_warmup": "constant"}


def scheduler(value, ctx: Context) -> str | None:
    if value not in SCHEDULERS:
        raise Unsupported(f"expected one of {', '.join(SCHEDULERS)}")
    ctx.set("train.scheduler", SCHEDULERS[value])
    return None


OPTIMIZERS = {"adamw_torch": "adamw_torch", "adamw_torch_fused": "adamw_torch_fused", "adamw_hf": "adamw",
              "adamw_8bit": "adamw_8bit", "adamw_bnb_8bit": "adamw_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
              "adafactor": "adafactor", "sgd": "sgd"}


def deepspeed_engine(value, ctx: Context) -> str | None:
    path = Path(str(value))
    if not path.is_file():
        raise Unsupported(f"{path}: no such DeepSpeed config (relative paths are read from {Path.cwd()})")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise Unsupported(f"{path}: not a JSON DeepSpeed config ({exc})") from None
    zero = settings.get("zero_optimization", {}) or {}
    stage = int(zero.get("stage", 0))
    engines = {0: "ddp", 1: "ddp", 2: "deepspeed_zero2", 3: "deepspeed_zero3"}
    ctx.set("train.distributed", engines.get(stage, "ddp"))
    offload = zero.get("offload_optimizer", {}) or {}
    if offload.get("device", "none") == "cpu":
        ctx.set("train.deepspeed.offload_optimizer", True)
    if (zero.get("offload_param", {}) or {}).get("device", "none") == "cpu":
        ctx.set("train.deepspeed.offload_params", True)
    note = {0: "ZeRO-0 is plain data parallel", 1: "ZeRO-1: tunelab runs DDP (ZeRO-2 and -3 are its DeepSpeed engines)"}
    return note.get(stage, "used when launched with several processes")


def fsdp_engine(value, ctx: Context) -> str | None:
    options = name_list(value.replace(" ", ",") if isinstance(value, str) else value)
    if not options:
        return "off"
    ctx.set("train.distributed", "fsdp")
    sharding = [option for option in options if option in ("full_shard", "shard_grad_op")]
    if sharding:
        ctx.set("train.fsdp.sharding", sharding[0])
    if "offload" in options:
        ctx.set("train.fsdp.offload", True)
    return "tunelab wraps the decoder layers itself"


def warmup(value, ctx: Context) -> str | None:
    if float(value) > 0:
        ctx.set("train.warmup", float(value))
    return None


def resume(value, ctx: Context) -> str | None:
    if value in (None, False):
        return "off"
    ctx.set("train.resume", True if value is True else str(value))
    return None


# transformers TrainingArguments keys both tools pass through unchanged.
TRAINING_ARGUMENTS = {
    "warmup_ratio": Via(warmup),
    "warmup_steps": Via(warmup),
    "weight_decay": To("train.weight_decay", float),
    "max_grad_norm": To("train.max_grad_norm", float),
    "lr_scheduler_kwargs": Refuse("scheduler arguments are not supported", unless=(None, {})),
    "adam_beta1": Refuse("tunelab's AdamW uses beta1 0.9", unless=(None, 0.9), holds="beta1 0.9"),
    "adam_beta2": Refuse("tunelab's AdamW uses beta2 0.999", unless=(None, 0.999), holds="beta2 0.999"),
    "adam_epsilon": Refuse("tunelab's AdamW uses epsilon 1e-8", unless=(None, 1e-8), holds="epsilon 1e-8"),
    "neftune_noise_alpha": To("train.neftune_alpha", float),
    "seed": To("train.seed", int),
}


def template_family(value, families: dict[str, str], what: str, ctx: Context, listed: str) -> None:
    """A peer's template name -> tunelab's family (data.template), the tokenizer's own template preferred when
    the model is of that family. `listed` closes the message after the translated names."""
    if value not in families:
        raise Unsupported(f"no tunelab family for {what} {value!r} (translated: {', '.join(families)}{listed}")
    ctx.set("data.template", families[value])
    ctx.set("data.prefer_tokenizer_template", True)
