"""Shared by the LoRA numerics tests: an adapter whose B is not zero, and one forward + backward."""
import torch
from peft import LoraConfig, get_peft_model


def with_lora(model, **lora):
    """`model` under LoRA r 4 on every linear layer, B drawn like A so the adapter changes the output."""
    model = get_peft_model(model, LoraConfig(**{"r": 4, "lora_alpha": 8, "target_modules": "all-linear",
                                                "lora_dropout": 0.0, **lora}))
    with torch.no_grad():  # B starts at zero: give it values so the adapter changes the output (and A gets a gradient)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return model


def run(model, ids, autocast: bool):
    """(output, gradients of the trainable parameters) of one language-modelling step, under bf16 autocast or not."""
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
