"""`method:` section — which parameters train and how (LoRA in this release; more methods register later)."""
from pydantic import Field, field_validator

from tunelab.config.base import Section


class MethodConfig(Section):
    name: str = Field("lora", description="Adaptation method (a name in the method registry).")
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

    loraplus_ratio: float = Field(16.0, gt=0, description="loraplus: learning-rate ratio of B over A.")

    @field_validator("name")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from tunelab.methods import METHODS  # the registry is the single source of valid names

        return METHODS.check(value)
