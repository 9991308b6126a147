"""LLaMA-Factory (0.9.x) training YAML -> tunelab config: every key LLaMA-Factory's argument classes define that its
users write, with what tunelab does with it. Keys: `hparams/{model,data,finetuning,training,generating}_args.py` of
LLaMA-Factory 0.9.5 and the transformers TrainingArguments they extend; semantics (defaults, lora_alpha = 2 x rank,
gradient checkpointing on unless disabled) from the same files.
"""
from __future__ import annotations

from tunelab.config.foreign.common import (OPTIMIZERS, TRAINING_ARGUMENTS, as_bool, deepspeed_engine, fsdp_engine,
                                           name_list, resume, scheduler, switch)
from tunelab.config.foreign import llamafactory_data as data
from tunelab.config.foreign.rules import Context, Ignore, Refuse, To, Together, Unsupported, Via

INFERENCE = "an inference setting (tunelab chat/serve take their own)"
MULTIMODAL = "images, video and audio: tunelab trains text models"
SPEED_ONLY = "a speed option of LLaMA-Factory's own kernels; tunelab uses its own"
LOGGING = "logging detail; tunelab logs progress, tokens/s and the loss plot (report.html) itself"
EXPORT = "an export setting (after training: tunelab export / tunelab merge)"


# --- stage and method -----------------------------------------------------------------------------------------------

STAGES = {"pt": "pretrain", "sft": "sft", "rm": "reward", "ppo": "ppo", "dpo": "dpo", "kto": "kto"}
# pref_loss -> (tunelab stage, TRL loss type of the dpo stage)
PREF_LOSSES = {"sigmoid": ("dpo", "sigmoid"), "hinge": ("dpo", "hinge"), "ipo": ("dpo", "ipo"),
               "orpo": ("orpo", None), "simpo": ("simpo", None)}


def _stage(value, ctx: Context) -> str | None:
    if value not in STAGES:
        raise Unsupported(f"expected one of {', '.join(STAGES)}")
    stage = STAGES[value]
    if value == "dpo":
        loss = ctx.get("pref_loss", "sigmoid")
        if loss not in PREF_LOSSES:
            raise Unsupported(f"pref_loss {loss!r}: tunelab's preference stages take {', '.join(PREF_LOSSES)}")
        stage, dpo_loss = PREF_LOSSES[loss]
        if dpo_loss and dpo_loss != "sigmoid":
            ctx.set("train.dpo_loss", dpo_loss)
    ctx.set("train.stage", stage)
    return None


# LoRA variants LLaMA-Factory switches on with flags; tunelab has a method for each (one at a time).
LORA_FLAGS = {"use_dora": "dora", "use_rslora": "rslora", "pissa_init": "pissa", "loraplus_lr_ratio": "loraplus",
              "quantization_bit": "qlora"}


def _method(value, ctx: Context) -> str | None:
    if value in ("full", "freeze"):
        if ctx.get("quantization_bit"):
            raise Unsupported(f"quantization_bit with finetuning_type {value}: a quantized base trains only adapters "
                              "(use finetuning_type: lora)")
        ctx.set("method.name", value)
        return None
    if value != "lora":
        raise Unsupported(f"{value!r} is not among tunelab's methods (full, freeze, lora and its variants; "
                          "`tunelab methods` lists them)")
    chosen = [key for key in LORA_FLAGS if ctx.get(key) not in (None, False, 0)]
    if len(chosen) > 1:
        raise Unsupported(f"{' + '.join(chosen)}: tunelab has one method for each ({', '.join(LORA_FLAGS[k] for k in chosen)}), "
                          "not their combination; keep one")
    name = LORA_FLAGS[chosen[0]] if chosen else "lora"
    ctx.set("method.name", name)
    if name == "loraplus":
        ctx.set("method.loraplus_ratio", float(ctx.get("loraplus_lr_ratio")))
    if name == "qlora":
        _quantization(ctx)
    rank = int(ctx.get("lora_rank", 8))
    if ctx.get("lora_alpha") is None:  # LLaMA-Factory's default is twice the rank
        ctx.set("method.alpha", 2 * rank)
    return None


def _quantization(ctx: Context) -> None:
    bits = int(ctx.get("quantization_bit"))
    if ctx.get("quantization_method", "bnb") != "bnb":
        raise Unsupported(f"quantization_method {ctx.get('quantization_method')!r}: tunelab quantizes with "
                          "bitsandbytes only (bnb)")
    if bits not in (4, 8):
        raise Unsupported(f"quantization_bit {bits}: bitsandbytes quantizes to 4 or 8 bits")
    ctx.set("method.bits", bits)


def _target(value, ctx: Context) -> str | None:
    names = name_list(value)
    ctx.set("method.target_modules", "all-linear" if names == ["all"] else names)
    return None


def _freeze_layers(value, ctx: Context) -> str | None:
    if int(value) <= 0:
        raise Unsupported("a negative count trains the first blocks; tunelab's freeze trains the last "
                          "method.trainable_layers blocks")
    ctx.set("method.trainable_layers", int(value))
    return None


def _freeze_modules(value, ctx: Context) -> str | None:
    if name_list(value) != ["all"]:
        raise Unsupported("tunelab's freeze trains whole blocks (all of their modules); only 'all' translates")
    return "tunelab trains the whole of each trainable block"


# --- precision, schedule, optimizer, engine ---------------------------------------------------------------------------

def _pure_bf16(value, ctx: Context) -> str | None:
    if not as_bool(value):
        return "off"
    ctx.set("train.precision", "bf16")
    return "bf16 compute; tunelab keeps fp32 master copies of what trains"


def _optimizer(value, ctx: Context) -> str | None:
    if value not in OPTIMIZERS:
        raise Unsupported(f"expected one of {', '.join(OPTIMIZERS)} (GaLore/APOLLO: use_galore / use_apollo)")
    ctx.set("train.optimizer", OPTIMIZERS[value])
    return None


def _projection(kind: str, fields: dict[str, str], defaults: dict[str, float]):
    """use_galore / use_apollo: the Trainer's optimizer of that name, its settings under train.projection
    (LLaMA-Factory's defaults where the file has none: its scales are not transformers')."""
    def convert(value, ctx: Context) -> str | None:
        if not as_bool(value):
            return "off"
        ctx.set("train.optimizer", f"{kind}_adamw")
        for key, target in fields.items():
            if ctx.get(key, defaults.get(key)) is not None:
                ctx.set(f"train.projection.{target}", ctx.get(key, defaults.get(key)))
        target = name_list(ctx.get(f"{kind}_target", "all"))
        ctx.set("train.projection.target_modules", "all-linear" if target == ["all"] else target)
        if as_bool(ctx.get(f"{kind}_layerwise", False)):  # same updates; its per-layer steps only save memory
            return "layerwise: tunelab steps the whole model at once (gradient clipping and accumulation work)"
        return None
    return convert


GALORE = {"galore_rank": "rank", "galore_update_interval": "update_interval", "galore_scale": "scale",
          "galore_proj_type": "proj_type"}
APOLLO = {"apollo_rank": "rank", "apollo_update_interval": "update_interval", "apollo_scale": "scale",
          "apollo_proj_type": "proj_type"}


def _report_to(value, ctx: Context) -> str | None:
    names = name_list(value)
    known = ("none", "tensorboard", "wandb", "mlflow", "swanlab")
    if len(names) != 1 or names[0] not in known:
        raise Unsupported(f"expected one of {', '.join(known)}")
    ctx.set("train.report_to", names[0])
    return None


def _steps_strategy(key: str):
    def convert(value, ctx: Context) -> str | None:
        if value == "epoch":
            ctx.set(f"train.{key}", 0)
            return "once per epoch"
        if value == "no":
            return "tunelab keeps the checkpoints resume needs" if key == "save_steps" else "no evaluation"
        if value == "steps":
            return f"every {key} (set by {key})"
        raise Unsupported("expected no, steps or epoch")
    return convert


def _max_steps(value, ctx: Context) -> str | None:
    ctx.set("train.max_steps", max(int(value), 0))
    return None


def _flash_attn(value, ctx: Context) -> str | None:
    choices = {"auto": "auto", "sdpa": "sdpa", "disabled": "eager", "fa2": "auto", "fa3": "auto"}
    if value not in choices:
        raise Unsupported(f"expected one of {', '.join(choices)}")
    ctx.set("model.attn_implementation", choices[value])
    return "SDPA, flash kernels where the device has them; packed training uses tunelab's" if value.startswith("fa") else None


def _gradient_checkpointing(value, ctx: Context) -> str | None:
    ctx.set("train.gradient_checkpointing", not as_bool(value))
    return None


def _not_training(value, ctx: Context) -> str | None:
    if not as_bool(value):
        raise Unsupported("tunelab train trains; for predictions after training use `tunelab predict` or `tunelab eval`")
    return "tunelab train trains"


def _max_samples(value, ctx: Context) -> str | None:
    ctx.set("train.max_samples", int(value))
    return "from each data set"


RULES = {
    # model
    "model_name_or_path": To("model.path"),
    "model_revision": To("model.revision"),
    "trust_remote_code": To("model.trust_remote_code", as_bool, "the checkpoint's own code will run: the file asks for it"),
    "adapter_name_or_path": Refuse("to continue from an earlier result, set model_name_or_path to a tunelab run "
                                   "directory (a LLaMA-Factory adapter is not one)"),
    "adapter_folder": Ignore("only used with adapter_name_or_path"),
    "cache_dir": Ignore("hub downloads go to the HF_HOME cache (set HF_HOME to move it)"),
    "use_fast_tokenizer": Refuse("tunelab loads the fast tokenizer", unless=(None, True), holds="fast tokenizer"),
    "resize_vocab": Refuse("tunelab resizes the vocabulary only for tokens a template needs", unless=(None, False)),
    "split_special_tokens": Refuse("tunelab keeps special tokens whole", unless=(None, False)),
    "add_tokens": Refuse("new tokens are added by templates that need them; adding others is not supported"),
    "add_special_tokens": Refuse("new tokens are added by templates that need them; adding others is not supported"),
    "new_special_tokens_config": Refuse("new tokens are added by templates that need them; adding others is not supported"),
    "init_special_tokens": Refuse("new tokens are added by templates that need them", unless=(None, "noise_init")),
    "low_cpu_mem_usage": Ignore("tunelab loads weights without a second copy"),
    "rope_scaling": Refuse("RoPE scaling (context extension) is not supported"),
    "flash_attn": Via(_flash_attn),
    "shift_attn": Refuse("shift short attention (LongLoRA) is not supported", unless=(None, False)),
    "mixture_of_depths": Refuse("mixture of depths is not supported"),
    "use_unsloth": Ignore(SPEED_ONLY),
    "use_unsloth_gc": Ignore(SPEED_ONLY),
    "enable_liger_kernel": Ignore(SPEED_ONLY),
    "use_v1_kernels": Ignore(SPEED_ONLY),
    "use_kernels": Ignore(SPEED_ONLY),
    "moe_aux_loss_coef": Refuse("the MoE router's auxiliary loss weight is the model's own"),
    "disable_gradient_checkpointing": Via(_gradient_checkpointing),
    "use_reentrant_gc": Ignore("tunelab chooses the checkpointing implementation"),
    "upcast_layernorm": Ignore("trainable weights are fp32 in tunelab; autocast runs norms in fp32"),
    "upcast_lmhead_output": Ignore("tunelab's loss computes in fp32"),
    "train_from_scratch": Refuse("tunelab fine-tunes pretrained weights", unless=(None, False)),
    "infer_backend": Ignore(INFERENCE), "infer_dtype": Ignore(INFERENCE), "use_kv_cache": Ignore(INFERENCE),
    "offload_folder": Ignore("tunelab does not offload weights to disk while training"),
    "hf_hub_token": Ignore("give the token as HF_TOKEN in the environment, not in a config file"),
    "ms_hub_token": Ignore("ModelScope is not used"), "om_hub_token": Ignore("Modelers is not used"),
    "print_param_status": Ignore(LOGGING),
    "quantization_method": Together("finetuning_type"),
    "quantization_bit": Together("finetuning_type"),
    "quantization_type": Refuse("tunelab's 4-bit quantization is NF4", unless=(None, "nf4"), holds="NF4"),
    "double_quantization": Ignore("tunelab always double-quantizes 4-bit bases (same math, 0.4 bits/param less)"),
    "quantization_device_map": Ignore("tunelab places the model itself"),
    **{key: Refuse(MULTIMODAL) for key in (
        "image_max_pixels", "image_min_pixels", "image_do_pan_and_scan", "crop_to_patches", "video_max_pixels",
        "video_min_pixels", "video_fps", "video_maxlen", "use_audio_in_video", "audio_sampling_rate", "media_dir")},
    **{key: Ignore(MULTIMODAL) for key in ("freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model")},
    **{key: Ignore(EXPORT) for key in (
        "export_dir", "export_size", "export_device", "export_quantization_bit", "export_quantization_dataset",
        "export_quantization_nsamples", "export_quantization_maxlen", "export_legacy_format", "export_hub_model_id")},
    **{key: Ignore(INFERENCE) for key in (
        "vllm_maxlen", "vllm_gpu_util", "vllm_enforce_eager", "vllm_max_lora_rank", "vllm_config", "sglang_maxlen",
        "sglang_mem_fraction", "sglang_tp_size", "sglang_config", "sglang_lora_backend", "do_sample", "temperature",
        "top_p", "top_k", "num_beams", "max_new_tokens", "repetition_penalty", "length_penalty", "skip_special_tokens",
        "predict_with_generate", "eval_num_beams")},
    **{key: Refuse("KTransformers is not supported") for key in (
        "use_kt", "kt_weight_path", "kt_expert_checkpoint_path", "kt_use_lora_experts", "kt_lora_expert_num",
        "kt_lora_expert_intermediate_size")},

    # data
    "template": Via(data.template),
    "dataset": Via(data.dataset),
    "dataset_dir": Together("dataset"),
    "mix_strategy": Together("dataset"),
    "interleave_probs": Together("dataset"),
    "eval_dataset": Via(data.eval_dataset),
    "cutoff_len": To("train.max_length", int),
    "train_on_prompt": Refuse("tunelab trains on the answers only (the prompt is context)", unless=(None, False)),
    "mask_history": Via(lambda value, ctx: ctx.set("data.train_on", "last" if as_bool(value) else "all")),
    "streaming": To("data.streaming", as_bool),
    "buffer_size": Ignore("tunelab reads a stream in file order (shuffle the file once instead)"),
    "overwrite_cache": Ignore("tunelab's cache is keyed by data, tokenizer, template and length: it cannot go stale"),
    "preprocessing_batch_size": Ignore("tokenizing speed; tunelab caches tokenized data"),
    "preprocessing_num_workers": Ignore("tokenizing speed; tunelab caches tokenized data"),
    "tokenized_path": Ignore("tunelab caches tokenized data itself (TUNELAB_CACHE)"),
    "data_shared_file_system": Ignore("tunelab tokenizes once per machine"),
    "max_samples": Via(_max_samples),
    "ignore_pad_token_for_loss": Ignore("padding is never in tunelab's loss"),
    "val_size": To("data.val_size"),
    "eval_on_each_dataset": Refuse("held-out loss is reported for the data as a whole", unless=(None, False)),
    "packing": Via(data.packing),
    "neat_packing": Via(lambda value, ctx: ctx.set("train.packing", True) if as_bool(value) else None),
    "tool_format": Refuse("tool calls are rendered by the chat template in force", unless=(None,)),
    "default_system": Refuse("a default system prompt comes from the template; put a system turn in the data"),
    "enable_thinking": To("data.enable_thinking", as_bool),
    "preserve_thinking": Refuse("reasoning of earlier turns is rendered as the template does", unless=(None, False)),

    # method
    "stage": Via(_stage),
    "finetuning_type": Via(_method),
    "lora_rank": To("method.r", int),
    "lora_alpha": To("method.alpha", float),
    "lora_dropout": To("method.dropout", float),
    "lora_target": Via(_target),
    "additional_target": Via(lambda value, ctx: ctx.set("method.modules_to_save", name_list(value))),
    "use_dora": Together("finetuning_type"),
    "use_rslora": Together("finetuning_type"),
    "pissa_init": Together("finetuning_type"),
    "loraplus_lr_ratio": Together("finetuning_type"),
    "pissa_iter": Ignore("tunelab's PiSSA initialises with peft's fast SVD"),
    "pissa_convert": Ignore("tunelab always saves PiSSA converted to a plain LoRA adapter"),
    "loraplus_lr_embedding": Ignore("LoRA+ embedding learning rate: tunelab trains no embedding adapters"),
    "create_new_adapter": Refuse("tunelab continues an adapter run with the same adapter", unless=(None, False)),
    "module_dropout": Refuse("module dropout is not supported", unless=(None, 0, 0.0)),
    "freeze_trainable_layers": Via(_freeze_layers),
    "freeze_trainable_modules": Via(_freeze_modules),
    "freeze_extra_modules": Via(lambda value, ctx: ctx.set("method.trainable_modules", name_list(value))),
    "oft_rank": Together("finetuning_type"), "oft_block_size": Together("finetuning_type"),
    "oft_target": Together("finetuning_type"),
    "use_llama_pro": Refuse("LLaMA Pro block expansion is not supported", unless=(None, False)),

    # preference and RL stages
    "pref_beta": To("train.beta", float),
    "pref_loss": Together("stage"),
    "pref_ftx": Refuse("an SFT term inside the preference loss is not supported", unless=(None, 0, 0.0)),
    "pref_bco_weight": Refuse("the BCO term is not supported", unless=(None, 0, 0.0)),
    "dpo_label_smoothing": Refuse("label smoothing of the DPO loss is not supported", unless=(None, 0, 0.0)),
    "kto_chosen_weight": Refuse("KTO class weights are not supported", unless=(None, 1, 1.0)),
    "kto_rejected_weight": Refuse("KTO class weights are not supported", unless=(None, 1, 1.0)),
    "simpo_gamma": To("train.simpo_gamma", float),
    "ld_alpha": Refuse("LD-DPO is not supported"),
    "ppo_buffer_size": Refuse("tunelab's PPO uses TRL's defaults", unless=(None, 1)),
    "ppo_epochs": Refuse("tunelab's PPO uses TRL's defaults", unless=(None, 4)),
    "ppo_score_norm": Refuse("tunelab's PPO uses TRL's defaults", unless=(None, False)),
    "ppo_target": Refuse("tunelab's PPO uses TRL's defaults", unless=(None, 6, 6.0)),
    "ppo_whiten_rewards": Refuse("tunelab's PPO uses TRL's defaults", unless=(None, False)),
    "ref_model": Refuse("the reference model is the starting model"),
    "ref_model_adapters": Refuse("the reference model is the starting model"),
    "ref_model_quantization_bit": Refuse("the reference model is the starting model"),
    "reward_model": To("train.reward_model", str, "a tunelab reward run directory"),
    "reward_model_adapters": Refuse("train.reward_model is a tunelab reward run directory, adapter included"),
    "reward_model_quantization_bit": Refuse("the reward model is loaded as its run saved it"),
    "reward_model_type": Ignore("train.reward_model is a tunelab reward run; its type is in the run"),

    # optimizers
    "optim": Via(_optimizer),
    "use_galore": Via(_projection("galore", GALORE, {"galore_scale": 2.0})),
    "use_apollo": Via(_projection("apollo", APOLLO, {"apollo_scale": 32.0})),
    **{key: Together("use_galore") for key in (*GALORE, "galore_target", "galore_layerwise")},
    **{key: Together("use_apollo") for key in (*APOLLO, "apollo_target", "apollo_layerwise")},
    "apollo_proj": Refuse("APOLLO's projection is random", unless=(None, "random"), holds="random projection"),
    "apollo_scale_type": Refuse("APOLLO's scaling is per channel", unless=(None, "channel"), holds="per channel"),
    "apollo_scale_front": Refuse("APOLLO's norm-growth limiter runs after scaling", unless=(None, False)),
    "use_badam": Refuse("BAdam is not supported", unless=(None, False)),
    **{key: Together("use_badam") for key in (
        "badam_mode", "badam_start_block", "badam_switch_mode", "badam_switch_interval", "badam_update_ratio",
        "badam_mask_mode", "badam_verbose")},
    "use_adam_mini": Refuse("Adam-mini is not supported", unless=(None, False)),
    "use_muon": Refuse("Muon is not supported", unless=(None, False)),
    "use_mca": Refuse("Megatron-Core is not supported", unless=(None, False)),
    "use_hyper_parallel": Refuse("hyper-parallel training is not supported", unless=(None, False)),
    "hyper_parallel_args": Refuse("hyper-parallel training is not supported"),
    "use_dft_loss": Refuse("the DFT loss is not supported", unless=(None, False)),
    "use_asft_loss": Refuse("the ASFT loss is not supported", unless=(None, False)),
    "asft_alpha": Together("use_asft_loss"),
    "use_eaft_loss": Refuse("the EAFT loss is not supported", unless=(None, False)),
    "eaft_alpha": Together("use_eaft_loss"),
    "fp8": Refuse("FP8 training is not supported", unless=(None, False)),
    "fp8_backend": Together("fp8"), "fp8_enable_fsdp_float8_all_gather": Together("fp8"),

    # swanlab
    "use_swanlab": Via(switch("train.report_to", "swanlab")),
    **{key: Ignore("SwanLab's own settings: set them as SWANLAB_* environment variables") for key in (
        "swanlab_project", "swanlab_workspace", "swanlab_run_name", "swanlab_mode", "swanlab_api_key",
        "swanlab_logdir", "swanlab_lark_webhook_url", "swanlab_lark_secret")},

    # training arguments
    "output_dir": To("output.dir", str),
    "overwrite_output_dir": To("output.overwrite", as_bool),
    "do_train": Via(_not_training),
    "do_eval": Ignore("held-out loss is computed whenever val_size is set"),
    "do_predict": Refuse("tunelab train trains; predict with `tunelab predict` after training", unless=(None, False)),
    "per_device_train_batch_size": To("train.batch_size", int),
    "per_device_eval_batch_size": Ignore("evaluation batches are train.batch_size"),
    "gradient_accumulation_steps": To("train.grad_accum", int),
    "learning_rate": To("train.lr", float),
    "num_train_epochs": To("train.epochs", float),
    "max_steps": Via(_max_steps),
    **TRAINING_ARGUMENTS,
    "lr_scheduler_type": Via(scheduler),
    "bf16": Via(switch("train.precision", "bf16")),
    "fp16": Via(switch("train.precision", "fp16")),
    "pure_bf16": Via(_pure_bf16),
    "tf32": Ignore("a GPU matmul setting (TF32) that torch chooses"),
    "gradient_checkpointing": To("train.gradient_checkpointing", as_bool),
    "data_seed": Ignore("the data order follows seed"),
    "logging_steps": To("train.logging_steps", int),
    "logging_first_step": Ignore(LOGGING), "logging_dir": Ignore(LOGGING), "disable_tqdm": Ignore(LOGGING),
    "plot_loss": Ignore("tunelab always plots the loss (report.html)"),
    "include_effective_tokens_per_second": Ignore(LOGGING), "include_num_input_tokens_seen": Ignore(LOGGING),
    "include_tokens_per_second": Ignore(LOGGING), "compute_accuracy": Ignore(LOGGING), "run_name": Ignore(LOGGING),
    "report_to": Via(_report_to),
    "save_steps": To("train.save_steps", int),
    "save_strategy": Via(_steps_strategy("save_steps")),
    "save_total_limit": To("train.save_total_limit", int),
    "save_only_model": Ignore("tunelab's checkpoints hold what resume needs; RUN/model holds the result"),
    "save_safetensors": Ignore("tunelab writes safetensors"),
    "eval_steps": To("train.eval_steps", int),
    "eval_strategy": Via(_steps_strategy("eval_steps")),
    "evaluation_strategy": Via(_steps_strategy("eval_steps")),
    "early_stopping_steps": To("train.early_stopping_patience", int),
    "load_best_model_at_end": Ignore("with early stopping tunelab keeps the best checkpoint itself"),
    "metric_for_best_model": Ignore("tunelab's early stopping watches eval_loss"),
    "greater_is_better": Ignore("tunelab's early stopping watches eval_loss"),
    "resume_from_checkpoint": Via(resume),
    "group_by_length": To("train.group_by_length", as_bool),
    "disable_shuffling": Refuse("tunelab shuffles the training data every epoch", unless=(None, False)),
    "deepspeed": Via(deepspeed_engine),
    "fsdp": Via(fsdp_engine),
    "fsdp_config": Ignore("tunelab configures FSDP from train.fsdp"),
    "fsdp_transformer_layer_cls_to_wrap": Ignore("tunelab wraps the decoder layers itself"),
    "ddp_timeout": Ignore("the process group's timeout"),
    "ddp_find_unused_parameters": Ignore("tunelab sets it for the methods that need it"),
    "dataloader_num_workers": Ignore("tunelab's rows are tokenized up front: no loading workers needed"),
    "dataloader_pin_memory": Ignore("data loading detail"),
    "use_cpu": Ignore("tunelab picks the device (CPU when there is no GPU)"),
    "push_to_hub": Refuse("tunelab does not upload; push RUN/model with `hf upload`", unless=(None, False)),
    "hub_model_id": Ignore("only used with push_to_hub"),
    "ray_run_name": Refuse("Ray is not supported"), "ray_storage_path": Refuse("Ray is not supported"),
    "ray_num_workers": Refuse("Ray is not supported: use tunelab train --nproc", unless=(None, 1)),
    "ray_init_kwargs": Refuse("Ray is not supported"),
    "master_addr": Ignore("give --master-addr to tunelab train"), "master_port": Ignore("give --master-port to tunelab train"),
    "enable_torch_profiler": Refuse("profiling runs are not supported; see bench/", unless=(None, False)),
    **{key: Together("enable_torch_profiler") for key in (
        "profiler_output_dir", "profiler_wait_steps", "profiler_warmup_steps", "profiler_active_steps", "profiler_repeat",
        "profiler_record_shapes", "profiler_profile_memory", "profiler_with_stack", "profile_modules")},
}

# Keys whose rule also runs when the file leaves them out, with LLaMA-Factory's default.
IMPLIED = {"finetuning_type": "lora"}
# Keys a training file must have (LLaMA-Factory refuses to train without them too).
REQUIRED = {"dataset": "the data set names in dataset_dir's dataset_info.json (comma-separated)"}

# LLaMA-Factory's defaults that train differently from tunelab's, written out when the file leaves them out.
DEFAULTS = {
    "learning_rate": ("train.lr", 5e-5, "transformers' default, which LLaMA-Factory keeps"),
    "lr_scheduler_type": ("train.scheduler", "linear", "transformers' default"),
    "cutoff_len": ("train.max_length", 2048, "LLaMA-Factory's default"),
    "bf16": ("train.precision", "fp32", "neither bf16 nor fp16 is set: LLaMA-Factory trains in fp32"),
}
# Not written out, as they change speed or memory, not what is learnt: packing (tunelab's keeps examples apart, so
# it trains what unpacked rows train) and gradient checkpointing (on by default there; train.gradient_checkpointing).


def detect(raw: dict) -> bool:
    """A LLaMA-Factory file names its model and what to train flat at the top level."""
    return "model_name_or_path" in raw and bool({"stage", "finetuning_type"} & set(raw))


def defaults(raw: dict) -> dict:
    """DEFAULTS that apply to this file (precision only when neither bf16, fp16 nor pure_bf16 is set)."""
    chosen = dict(DEFAULTS)
    if any(as_bool(raw.get(key)) for key in ("fp16", "pure_bf16")):
        chosen.pop("bf16")
    return chosen
