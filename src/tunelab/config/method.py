"""`method:` section — which parameters train and how. Keys are shared across methods where they mean
the same thing (`r`, `target_modules`); `tunelab methods` lists which keys each method reads."""
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tunelab.config.base import Section, backends
from tunelab.specs.methods import METHOD_SPECS


class MethodConfig(Section):
    name: str = Field("lora", json_schema_extra=backends(qlora="bitsandbytes"),
                      description="Adaptation method (a name in the method registry).")
    r: int = Field(8, gt=0, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout; 0 lets peft skip a copy of the input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="'all-linear' or a list of module names (q_proj, v_proj, ...)."
    )

    trainable_layers: int = Field(2, gt=0, description="freeze: how many of the last transformer blocks train.")
    trainable_modules: list[str] = Field(
        default_factory=list, description="freeze: further modules that train, by name (embed_tokens, lm_head, norm)."
    )

    num_virtual_tokens: int = Field(20, gt=0, description="prompt, prefix, ptuning: how many virtual tokens.")
    prompt_init_text: str | None = Field(None, description="prompt: initialise the virtual tokens from this text.")
    encoder_hidden_size: int = Field(128, gt=0, description="ptuning: width of the prompt encoder.")

    modules_to_save: list[str] = Field(
        default_factory=list,
        description="Further modules trained in full and saved with the adapter (score head, embed_tokens, ...).")

    bits: Literal[4, 8] = Field(4, description="qlora: quantization of the frozen base (4: NF4 + double quant).")

    adalora_init_r: int = Field(12, gt=0, description="adalora: starting rank; the budget shrinks to r.")
    adalora_orth_weight: float = Field(0.5, ge=0, description="adalora: weight of the orthogonality penalty.")

    adapter_size: int = Field(64, gt=0, description="adapter: bottleneck width of each Houlsby adapter.")
    adapter_activation: Literal["gelu", "relu", "silu", "tanh"] = Field("gelu", description="adapter: non-linearity.")

    num_experts: int = Field(4, gt=0, description="moe-lora: LoRA experts per targeted layer.")
    top_k: int = Field(2, gt=0, description="moe-lora: experts each token is routed to.")
    router_aux_weight: float = Field(0.01, ge=0, description="moe-lora: weight of the load-balancing loss.")

    loraplus_ratio: float = Field(16.0, gt=0, description="loraplus: learning-rate ratio of B over A.")

    @field_validator("target_modules")
    @classmethod
    def _one_module_name_is_a_list(cls, value: str | list[str]) -> str | list[str]:
        """`target_modules: q_proj` means [q_proj] (peft would read a lone string as a regex over full names)."""
        return [value] if isinstance(value, str) and value != "all-linear" else value

    @field_validator("name")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return METHOD_SPECS.check(value)  # the registry is the single source of valid names

    @model_validator(mode="after")
    def _top_k_fits(self):
        if self.top_k > self.num_experts:
            raise ValueError(f"method.top_k: {self.top_k} is more than method.num_experts ({self.num_experts})")
        return self
