"""axolotl YAML -> tunelab config. Keys and defaults from axolotl 0.19's schema (`axolotl/utils/schemas/`: config,
model, peft, training, datasets); the keys its LoRA/QLoRA/full examples write are covered, the rest is refused by
name.
"""
from __future__ import annotations

from pathlib import Path

from tunelab.config.foreign.common import OPTIMIZERS as COMMON_OPTIMIZERS
from tunelab.config.foreign.common import (TRAINING_ARGUMENTS, as_bool, deepspeed_engine, fsdp_engine, name_list, resume,
                                           scheduler, switch, template_family)
from tunelab.config.foreign.rules import Context, Ignore, Refuse, To, Together, Unsupported, Via

LOGGING = "logging detail; tunelab logs progress, tokens/s and the loss plot (report.html) itself"
SPEED_ONLY = "a speed option of axolotl's kernels; tunelab uses its own"

# axolotl dataset `type` -> tunelab data.format (None: tunelab detects the layout from the first record)
DATASET_TYPES = {"alpaca": "alpaca", "chat_template": None, "sharegpt": "sharegpt", "completion": "text"}
# keys of one `datasets:` entry tunelab reads, and those it accepts only at axolotl's default
ENTRY_DEFAULTS = {"field_messages": (None, "messages", "conversations"), "roles_to_train": (None, ["assistant"]),
                  "train_on_eos": (None, "turn", "last"), "message_property_mappings": (
                      None, {"role": "role", "content": "content"}, {"role": "from", "content": "value"}),
                  "message_field_role": (None, "role", "from"), "message_field_content": (None, "content", "value"),
                  "field": (None, "text"), "chat_template": (None, "tokenizer_default"), "shards": (None,),
                  "drop_system_message": (None, False), "trust_remote_code": (None, False),
                  "field_chosen": (None, "chosen"), "field_rejected": (None, "rejected")}


def _entry_type(entry: dict) -> str:
    kind = entry.get("type") or "chat_template"
    if not isinstance(kind, str):
        raise Unsupported("a user-defined prompt format (type: {...}) is not supported; convert the data to "
                          "alpaca, sharegpt or messages records")
    base = kind.split(":")[0].split(".")[0]
    if base not in DATASET_TYPES:
        raise Unsupported(f"type {kind!r}: tunelab translates {', '.join(DATASET_TYPES)}")
    return base


def _source(entry: dict) -> dict:
    """One `datasets:` entry -> a tunelab data source: a local file or folder, else a hub data set."""
    if not isinstance(entry, dict) or not entry.get("path"):
        raise Unsupported("each entry needs a path")
    for key, allowed in ENTRY_DEFAULTS.items():
        if entry.get(key) not in allowed:
            raise Unsupported(f"{key}: {entry.get(key)!r} is not supported (tunelab takes {allowed[1:] or 'none'})")
    unknown = set(entry) - set(ENTRY_DEFAULTS) - {"path", "type", "split", "name", "data_files", "ds_type"}
    if unknown:
        raise Unsupported(f"entry keys not supported: {', '.join(sorted(unknown))}")
    path, files = str(entry["path"]), entry.get("data_files")
    source: dict = {}
    if files:
        files = files if isinstance(files, list) else [files]
        if len(files) != 1:
            raise Unsupported("several data_files in one entry: give each its own entry")
        path = str(Path(path) / files[0]) if Path(path).is_dir() else str(files[0])
    if Path(path).exists():
        source["path"] = path
    else:
        source["path"] = f"hf:{path}"
        if entry.get("name"):
            source["subset"] = entry["name"]
        if entry.get("split"):
            source["split"] = entry["split"]
    fmt = DATASET_TYPES[_entry_type(entry)]
    if fmt:
        source["format"] = fmt
    return source


def _datasets(value, ctx: Context) -> str | None:
    entries = value if isinstance(value, list) else [value]
    if not entries:
        raise Unsupported("no data sets listed")
    kinds = {_entry_type(entry) for entry in entries}
    if "completion" in kinds and len(kinds) > 1:
        raise Unsupported("completion (raw text) beside instruction data: train them in separate runs")
    sources = [_source(entry) for entry in entries]
    if "completion" in kinds and not ctx.get("rl"):
        ctx.set("train.stage", "pretrain")
    if len(sources) == 1:
        for key, item in sources[0].items():
            ctx.set(f"data.{key}", item)
        return None
    ctx.set("data.mix", [{**source, "weight": 1.0} for source in sources])
    ctx.set("data.mix_stop", "concat")
    return "every example of every data set once, shuffled together (axolotl concatenates them)"


def _pretraining(value, ctx: Context) -> str | None:
    entries = value if isinstance(value, list) else [value]
    if len(entries) != 1:
        raise Unsupported("one pretraining data set at a time")
    entry = entries[0]
    path = str(entry.get("path") or entry.get("name") or "")
    if not path:
        raise Unsupported("the entry needs a path")
    ctx.set("train.stage", "pretrain")
    ctx.set("data.path", path if Path(path).exists() else f"hf:{path}")
    ctx.set("data.format", "text")
    ctx.set("data.streaming", True)
    return "streamed, as axolotl streams it (needs max_steps)"


def _adapter(value, ctx: Context) -> str | None:
    four, eight = as_bool(ctx.get("load_in_4bit", False)), as_bool(ctx.get("load_in_8bit", False))
    if value in (None, ""):
        if four or eight:
            raise Unsupported("load_in_4bit/load_in_8bit without an adapter: a quantized base trains only adapters")
        ctx.set("method.name", "full")
        return "no adapter: full fine-tuning"
    if value not in ("lora", "qlora"):
        raise Unsupported(f"adapter {value!r}: tunelab translates lora and qlora (other methods: `tunelab methods`)")
    flags = {"peft_use_dora": "dora", "peft_use_rslora": "rslora", "loraplus_lr_ratio": "loraplus"}
    chosen = [key for key in flags if ctx.get(key) not in (None, False)]
    quantized = value == "qlora" or four or eight
    if len(chosen) + quantized > 1:
        raise Unsupported(f"{' + '.join(chosen + ['quantization'] * quantized)}: tunelab has one method for each, "
                          "not their combination")
    if quantized:
        ctx.set("method.name", "qlora")
        ctx.set("method.bits", 8 if eight and not four else 4)
        return None
    name = flags[chosen[0]] if chosen else "lora"
    ctx.set("method.name", name)
    if name == "loraplus":
        ctx.set("method.loraplus_ratio", float(ctx.get("loraplus_lr_ratio")))
    return None


def _targets(value, ctx: Context) -> str | None:
    if ctx.get("lora_target_linear") and as_bool(ctx.get("lora_target_linear")):
        return "lora_target_linear wins: all linear layers"
    ctx.set("method.target_modules", name_list(value))
    return None


def _target_linear(value, ctx: Context) -> str | None:
    if as_bool(value):
        ctx.set("method.target_modules", "all-linear")
    return None if as_bool(value) else "off"


def _lora_dir(value, ctx: Context) -> str | None:
    if value in (None, ""):
        return "none"
    raise Unsupported("to continue from an earlier result, set base_model to a tunelab run directory")


RL = {"dpo": ("dpo", None), "ipo": ("dpo", "ipo"), "orpo": ("orpo", None), "simpo": ("simpo", None),
      "kto": ("kto", None), "grpo": ("grpo", None)}


def _rl(value, ctx: Context) -> str | None:
    if value not in RL:
        raise Unsupported(f"rl {value!r}: tunelab translates {', '.join(RL)}")
    stage, loss = RL[value]
    ctx.set("train.stage", stage)
    if loss:
        ctx.set("train.dpo_loss", loss)
    return None


def _precision(name: str):
    def convert(value, ctx: Context) -> str | None:
        if value == "auto" and name == "bf16":
            ctx.set("train.precision", "auto")
            return "bf16 where the device has it, else fp32"
        if as_bool(value):
            ctx.set("train.precision", name)
            return None
        return "off"
    return convert


OPTIMIZERS = {**COMMON_OPTIMIZERS, "adamw_torch_4bit": None, "ao_adamw_8bit": None}


def _optimizer(value, ctx: Context) -> str | None:
    if not OPTIMIZERS.get(value):
        raise Unsupported(f"expected one of {', '.join(key for key, name in OPTIMIZERS.items() if name)}")
    ctx.set("train.optimizer", OPTIMIZERS[value])
    return None


def _per_epoch(key: str):
    def convert(value, ctx: Context) -> str | None:
        if int(value) == 1:
            ctx.set(f"train.{key}", 0)
            return "once per epoch"
        return f"tunelab counts in steps: set train.{key} (0: once per epoch)" if int(value) > 1 else "never"
    return convert


CHAT_TEMPLATES = {"chatml": "chatml", "llama3": "llama3", "llama2": "llama2", "qwen_25": "qwen2", "qwen3": "qwen3",
                  "gemma": "gemma", "gemma3": "gemma", "mistral_v1": "mistral", "mistral_v2v3": "mistral",
                  "mistral_v3_tekken": "mistral", "phi_3": "phi3", "phi_35": "phi3", "phi_4": "phi4",
                  "alpaca": "alpaca", "deepseek_r1": "deepseek-r1"}


def _chat_template(value, ctx: Context) -> str | None:
    if value in (None, "tokenizer_default"):
        return "the tokenizer's own"
    template_family(value, CHAT_TEMPLATES, "axolotl's chat_template", ctx, ", tokenizer_default)")
    return "the tokenizer's own template when the model is of that family"


def _special_tokens(value, ctx: Context) -> str | None:
    tokens = value or {}
    if set(tokens) - {"pad_token"}:
        raise Unsupported(f"{', '.join(sorted(set(tokens) - {'pad_token'}))}: tunelab takes bos/eos from the "
                          "tokenizer and adds only tokens a template needs")
    return "tunelab sets the pad token itself (EOS when the tokenizer has none); padding is never in the loss"


def _plugins(value, ctx: Context) -> str | None:
    names = value or []
    other = [name for name in names if "liger" not in name.lower() and "cut_cross_entropy" not in name.lower()]
    if other:
        raise Unsupported(f"plugins {', '.join(other)} are not supported")
    return SPEED_ONLY


def _wandb(value, ctx: Context) -> str | None:
    if value:
        ctx.set("train.report_to", "wandb")
        return "set WANDB_PROJECT to choose the project"
    return "off"


def _gradient_checkpointing(value, ctx: Context) -> str | None:
    ctx.set("train.gradient_checkpointing", value == "unsloth" or as_bool(value))
    return None


def _train_on_inputs(value, ctx: Context) -> str | None:
    if as_bool(value):
        raise Unsupported("tunelab trains on the answers only (the prompt is context)")
    return "answers only"


RULES = {
    "base_model": To("model.path", str),
    "base_model_config": Refuse("the model's config is read from base_model", unless=(None,)),
    "model_type": Ignore("tunelab reads the architecture from the model's config"),
    "tokenizer_type": Ignore("tunelab loads the model's own tokenizer"),
    "tokenizer_config": Refuse("tunelab loads the tokenizer saved with the model", unless=(None,)),
    "tokenizer_use_fast": Refuse("tunelab loads the fast tokenizer", unless=(None, True), holds="fast tokenizer"),
    "tokenizer_legacy": Ignore("a slow-tokenizer setting"),
    "trust_remote_code": To("model.trust_remote_code", as_bool, "the checkpoint's own code will run: the file asks for it"),
    "revision_of_model": To("model.revision", str),
    "strict": Ignore("axolotl's own override check"),
    "load_in_8bit": Together("adapter"),
    "load_in_4bit": Together("adapter"),
    "adapter": Via(_adapter),
    "lora_model_dir": Via(_lora_dir),
    "lora_r": To("method.r", int),
    "lora_alpha": To("method.alpha", float),
    "lora_dropout": To("method.dropout", float),
    "lora_target_modules": Via(_targets),
    "lora_target_linear": Via(_target_linear),
    "lora_fan_in_fan_out": Ignore("peft sets it for GPT-2-style layers"),
    "lora_modules_to_save": Via(lambda value, ctx: ctx.set("method.modules_to_save", name_list(value)) if value else None),
    "peft_use_dora": Together("adapter"),
    "peft_use_rslora": Together("adapter"),
    "loraplus_lr_ratio": Together("adapter"),
    "loraplus_lr_embedding": Ignore("LoRA+ embedding learning rate: tunelab trains no embedding adapters"),
    "unfrozen_parameters": Refuse("full fine-tuning of chosen parameters: use method freeze (trainable_layers, "
                                  "trainable_modules)"),

    "datasets": Via(_datasets),
    "pretraining_dataset": Via(_pretraining),
    "test_datasets": Refuse("held-out data is split off with val_set_size"),
    "dataset_prepared_path": Ignore("tunelab caches tokenized data itself (TUNELAB_CACHE)"),
    "dataset_processes": Ignore("tokenizing speed; tunelab caches tokenized data"),
    "dataset_num_proc": Ignore("tokenizing speed; tunelab caches tokenized data"),
    "shuffle_merged_datasets": Ignore("tunelab shuffles the training data every epoch"),
    "val_set_size": To("data.val_size", float),
    "chat_template": Via(_chat_template),
    "default_system_message": Refuse("a default system prompt comes from the template; put a system turn in the data"),
    "special_tokens": Via(_special_tokens),
    "tokens": Refuse("new tokens are added by templates that need them; adding others is not supported"),
    "added_tokens_overrides": Refuse("overriding tokens is not supported"),
    "train_on_inputs": Via(_train_on_inputs),
    "sequence_len": To("train.max_length", int),
    "sample_packing": To("train.packing", as_bool, "each example attends only to itself"),
    "eval_sample_packing": Ignore("held-out batches are packed as training's"),
    "pad_to_sequence_len": Ignore("padding to a fixed length only helps compiled kernels; tunelab packs"),
    "group_by_length": To("train.group_by_length", as_bool),

    "rl": Via(_rl),
    "rl_beta": To("train.beta", float),
    "orpo_alpha": To("train.beta", float, "ORPO's weight of the odds-ratio term"),
    "simpo_gamma": To("train.simpo_gamma", float),
    "dpo_label_smoothing": Refuse("label smoothing of the DPO loss is not supported", unless=(None, 0, 0.0)),
    "kto_desirable_weight": Refuse("KTO class weights are not supported", unless=(None, 1, 1.0)),
    "kto_undesirable_weight": Refuse("KTO class weights are not supported", unless=(None, 1, 1.0)),

    "micro_batch_size": To("train.batch_size", int),
    "gradient_accumulation_steps": To("train.grad_accum", int),
    "batch_size": Refuse("give micro_batch_size and gradient_accumulation_steps", unless=(None,)),
    "eval_batch_size": Ignore("evaluation batches are train.batch_size"),
    "num_epochs": To("train.epochs", float),
    "max_steps": Via(lambda value, ctx: ctx.set("train.max_steps", max(int(value or 0), 0))),
    "learning_rate": To("train.lr", float),
    "lr_scheduler": Via(scheduler),
    "cosine_min_lr_ratio": Refuse("a floor under the cosine schedule is not supported", unless=(None,)),
    "lr_quadratic_warmup": Refuse("quadratic warm-up is not supported", unless=(None, False)),
    "optimizer": Via(_optimizer),
    **TRAINING_ARGUMENTS,

    "bf16": Via(_precision("bf16")),
    "fp16": Via(_precision("fp16")),
    "tf32": Ignore("a GPU matmul setting (TF32) that torch chooses"),
    "gradient_checkpointing": Via(_gradient_checkpointing),
    "gradient_checkpointing_kwargs": Ignore("tunelab chooses the checkpointing implementation"),
    "flash_attention": Via(switch("model.attn_implementation", "auto")),
    "sdp_attention": Via(switch("model.attn_implementation", "sdpa")),
    "eager_attention": Via(switch("model.attn_implementation", "eager")),
    "xformers_attention": Ignore(SPEED_ONLY),
    "flex_attention": Ignore(SPEED_ONLY),
    "torch_compile": Ignore(SPEED_ONLY),
    "plugins": Via(_plugins),
    "liger_rope": Ignore(SPEED_ONLY), "liger_rms_norm": Ignore(SPEED_ONLY), "liger_glu_activation": Ignore(SPEED_ONLY),
    "liger_layer_norm": Ignore(SPEED_ONLY), "liger_fused_linear_cross_entropy": Ignore(SPEED_ONLY),
    "cut_cross_entropy": Ignore(SPEED_ONLY),

    "output_dir": To("output.dir", str),
    "resume_from_checkpoint": Via(resume),
    "auto_resume_from_checkpoints": Via(switch("train.resume", True)),
    "logging_steps": To("train.logging_steps", int),
    "save_steps": To("train.save_steps", int),
    "saves_per_epoch": Via(_per_epoch("save_steps")),
    "save_strategy": Ignore("tunelab checkpoints every train.save_steps (0: every epoch)"),
    "save_total_limit": To("train.save_total_limit", int),
    "save_safetensors": Ignore("tunelab writes safetensors"),
    "save_first_step": Ignore("checkpoint timing"),
    "save_only_model": Ignore("tunelab's checkpoints hold what resume needs; RUN/model holds the result"),
    "eval_steps": To("train.eval_steps", int),
    "evals_per_epoch": Via(_per_epoch("eval_steps")),
    "eval_strategy": Ignore("held-out loss every train.eval_steps (0: every epoch) when val_set_size is set"),
    "eval_table_size": Ignore(LOGGING), "eval_max_new_tokens": Ignore(LOGGING),
    "do_causal_lm_eval": Ignore("generation metrics: the eval: section"),
    "early_stopping_patience": To("train.early_stopping_patience", int),
    "loss_watchdog_threshold": Ignore("tunelab stops after train.max_bad_steps non-finite steps instead"),
    "loss_watchdog_patience": Ignore("tunelab stops after train.max_bad_steps non-finite steps instead"),
    "wandb_project": Via(_wandb),
    "wandb_entity": Ignore("set WANDB_ENTITY"), "wandb_watch": Ignore(LOGGING), "wandb_name": Ignore(LOGGING),
    "wandb_run_id": Ignore(LOGGING), "wandb_log_model": Ignore(LOGGING),
    "use_tensorboard": Via(lambda value, ctx: ctx.set("train.report_to", "tensorboard") if as_bool(value) else None),
    "mlflow_tracking_uri": Ignore("set MLFLOW_TRACKING_URI (train.report_to: mlflow)"),
    "mlflow_experiment_name": Ignore("set MLFLOW_EXPERIMENT_NAME"),
    "include_tokens_per_second": Ignore(LOGGING), "include_tkps": Ignore(LOGGING), "debug": Ignore(LOGGING),
    "local_rank": Ignore("set by the launcher"),
    "deepspeed": Via(deepspeed_engine),
    "fsdp": Via(fsdp_engine),
    "fsdp_config": Ignore("tunelab configures FSDP from train.fsdp"),
    "fsdp_version": Ignore("transformers runs FSDP2"),
    "ddp_timeout": Ignore("the process group's timeout"),
    "dataloader_num_workers": Ignore("tunelab's rows are tokenized up front: no loading workers needed"),
    "dataloader_pin_memory": Ignore("data loading detail"), "dataloader_prefetch_factor": Ignore("data loading detail"),
    "hub_model_id": Refuse("tunelab does not upload; push RUN/model with `hf upload`", unless=(None,)),
    "hub_strategy": Ignore("only used with hub_model_id"),
}

# axolotl's defaults that train differently from tunelab's, written out when the file leaves them out.
DEFAULTS = {
    "sequence_len": ("train.max_length", 512, "axolotl's default"),
    "micro_batch_size": ("train.batch_size", 1, "axolotl's default"),
    "num_epochs": ("train.epochs", 1.0, "axolotl's default"),
    "bf16": ("train.precision", "fp32", "neither bf16 nor fp16 is set: axolotl trains in fp32"),
}

# Keys whose rule also runs when the file leaves them out, with axolotl's default.
IMPLIED = {"adapter": None}
# Keys a training file must have.
REQUIRED = {"learning_rate": "axolotl has no default learning rate"}


def detect(raw: dict) -> bool:
    """An axolotl file names its base model and its data at the top level."""
    return "base_model" in raw and bool({"datasets", "pretraining_dataset"} & set(raw))


def defaults(raw: dict) -> dict:
    chosen = dict(DEFAULTS)
    if as_bool(raw.get("fp16")):
        chosen.pop("bf16")
    return chosen
