"""The prompt family through peft: trained virtual tokens (prompt), per-layer prefixes of keys and
values (prefix), or a small encoder that produces the virtual tokens (P-tuning).

They add positions the data does not have, so they cannot share packed rows (registry flag
`supports_packing = False`) and they run the model's own forward (peft inserts the tokens there).
They change the model's output from the first step and cannot be merged into the weights.
"""
from __future__ import annotations

import contextlib

from torch import nn

from tunelab.errors import TunelabError
from tunelab.methods.base import register
from tunelab.methods.peft_base import PeftMethod


class PromptLearningMethod(PeftMethod):
    @property
    def extra_positions(self) -> int:
        return self.config.num_virtual_tokens

    def merge(self, model: nn.Module) -> nn.Module:
        raise TunelabError(f"method {self.name}: virtual tokens cannot be folded into the weights")

    @contextlib.contextmanager
    def disable(self, model: nn.Module):
        """peft drops the virtual tokens but leaves modules_to_save active for prompt learning: switch those too."""
        from peft.utils.other import AuxiliaryTrainingWrapper

        wrappers = [m for m in model.modules() if isinstance(m, AuxiliaryTrainingWrapper)]
        with model.disable_adapter():
            for wrapper in wrappers:
                wrapper.enable_adapters(False)
            try:
                yield model
            finally:
                for wrapper in wrappers:
                    wrapper.enable_adapters(True)


@register("prompt")
class PromptTuningMethod(PromptLearningMethod):
    def peft_config(self):
        from peft import PromptTuningConfig, PromptTuningInit, TaskType

        text = self.config.prompt_init_text
        init = {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": text} if text else {}
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=self.config.num_virtual_tokens,
                                  **init)

    def configure(self, config, model: nn.Module) -> None:
        super().configure(config, model)
        if self.config.prompt_init_text:  # peft tokenizes the text with the base model's own tokenizer
            config.tokenizer_name_or_path = model.name_or_path


@register("prefix")
class PrefixTuningMethod(PromptLearningMethod):
    def peft_config(self):
        from peft import PrefixTuningConfig, TaskType

        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=self.config.num_virtual_tokens,
                                  prefix_projection=True, encoder_hidden_size=self.config.encoder_hidden_size)


@register("ptuning")
class PTuningMethod(PromptLearningMethod):
    def peft_config(self):
        from peft import PromptEncoderConfig, TaskType

        return PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=self.config.num_virtual_tokens,
                                   encoder_hidden_size=self.config.encoder_hidden_size)
