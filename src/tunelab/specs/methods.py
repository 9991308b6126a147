"""The adaptation methods: what each reads and can do. The training code is in tunelab.methods (one module per
method or family, registered under these names)."""
from __future__ import annotations

from dataclasses import replace

from tunelab.registry import Registry
from tunelab.specs.base import MethodCaps, MethodSpec

METHOD_SPECS: Registry[MethodSpec] = Registry("method")

LORA_KEYS = ("r", "alpha", "dropout", "target_modules")
SAVED = ("modules_to_save",)              # peft methods train and save whole extra modules on request
PEFT = MethodCaps(trains_added_tokens=True)
LORA = replace(PEFT, update_is_ba_from_zero=True)
PROMPT_LEARNING = MethodCaps(
    supports_packing=False,   # virtual tokens in front of every example
    fused_loss=False,         # peft inserts the virtual tokens in the model's own forward
    mergeable=False, starts_as_base=False,
    trains_added_tokens=False)  # peft's prompt learning trains no base module rows
OWN_WEIGHTS = MethodCaps(is_adapter=False, trains_added_tokens=True)  # whole embedding and lm_head are saved


def _add(*specs: MethodSpec) -> None:
    for spec in specs:
        METHOD_SPECS[spec.name] = spec


_add(
    MethodSpec("full", "full fine-tuning: every parameter trains", caps=OWN_WEIGHTS),
    MethodSpec("freeze", "freeze tuning: only the last method.trainable_layers blocks (and method.trainable_modules) "
               "train", ("trainable_layers", "trainable_modules", "modules_to_save"), OWN_WEIGHTS),
    MethodSpec("bitfit", "BitFit: only bias terms train (zero biases added to bias-free linear layers)",
               ("target_modules", "modules_to_save")),
    MethodSpec("lora", "LoRA: low-rank update B·A added to each targeted linear layer", LORA_KEYS + SAVED, LORA),
    MethodSpec("dora", "DoRA: LoRA on the direction, a learned magnitude per output (weight-decomposed)",
               LORA_KEYS + SAVED,
               # the magnitudes are divided by the base weight's norm, taken in fp32
               replace(PEFT, frozen_in_compute_dtype=False)),
    MethodSpec("rslora", "rsLoRA: LoRA scaled by alpha/sqrt(r), stable at high rank", LORA_KEYS + SAVED, LORA),
    MethodSpec("loraplus", "LoRA+: LoRA whose B matrices learn method.loraplus_ratio times faster",
               LORA_KEYS + ("loraplus_ratio",) + SAVED, LORA),
    MethodSpec("pissa", "PiSSA: LoRA initialised from the principal singular vectors of each weight",
               LORA_KEYS + SAVED,
               # the saved adapter is converted to plain LoRA: resume needs the raw one
               replace(PEFT, saves_checkpoints=True, checkpoint_resumes=False)),
    MethodSpec("qlora", "QLoRA: LoRA on a base quantized by bitsandbytes (4-bit NF4 + double quant, or 8-bit)",
               LORA_KEYS + ("bits",) + SAVED, LORA),
    MethodSpec("adalora", "AdaLoRA: SVD-form LoRA whose rank budget shrinks from adalora_init_r to r where it "
               "matters least", ("r", "adalora_init_r", "alpha", "dropout", "target_modules", "adalora_orth_weight")
               + SAVED,
               replace(LORA,
                       fused_loss=False,          # peft adds the orthogonality penalty inside the model's forward
                       trains_task_heads=False,   # peft refuses a trainable head module beside an AdaLoRA adapter
                       works_with_trl=False,      # ... and a reference adapter; its rank schedule needs its forward
                       checkpoint_resumes=False)),  # peft saves only the kept ranks; training goes on full-size
    MethodSpec("ia3", "IA3: learned rescaling vectors on the targeted layers' activations",
               ("target_modules",) + SAVED, PEFT),
    MethodSpec("vera", "VeRA: frozen shared random projections, trained scaling vectors",
               ("r", "dropout", "target_modules") + SAVED, PEFT),
    MethodSpec("loha", "LoHa: low-rank Hadamard product update", LORA_KEYS + SAVED, PEFT),
    MethodSpec("lokr", "LoKr: low-rank Kronecker product update", LORA_KEYS + SAVED, PEFT),
    MethodSpec("prompt", "prompt tuning: method.num_virtual_tokens trained input embeddings (optionally from a "
               "text)", ("num_virtual_tokens", "prompt_init_text") + SAVED, PROMPT_LEARNING),
    MethodSpec("prefix", "prefix tuning: keys and values prepended in every layer, trained through an MLP (as in "
               "the paper)", ("num_virtual_tokens", "encoder_hidden_size") + SAVED,
               # peft saves the encoder's output, not the encoder that trains
               replace(PROMPT_LEARNING, checkpoint_resumes=False)),
    MethodSpec("ptuning", "P-tuning: a small MLP encoder produces the virtual tokens",
               ("num_virtual_tokens", "encoder_hidden_size") + SAVED,
               replace(PROMPT_LEARNING, checkpoint_resumes=False)),
    MethodSpec("adapter", "bottleneck adapters (Houlsby): a small MLP after the attention and the MLP of every "
               "block", ("adapter_size", "adapter_activation"),
               MethodCaps(mergeable=False, trains_task_heads=False, saves_checkpoints=True)),  # saves only adapters
    MethodSpec("moe-lora", "MoE-LoRA: method.num_experts LoRA experts per layer; a learned router sends each token "
               "to top_k", LORA_KEYS + ("num_experts", "top_k", "router_aux_weight"),
               MethodCaps(mergeable=False,
                          trains_task_heads=False,  # saves only router and experts
                          adds_loss_terms=True,     # the load-balancing loss
                          saves_checkpoints=True,   # the Trainer's model.safetensors would hold the whole base too
                          unused_parameters=True)),  # top-k routing: an expert no token chose gets no gradient
)
