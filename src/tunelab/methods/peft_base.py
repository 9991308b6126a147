"""What every peft-backed method shares: wrap, load, merge and switch off through peft itself.
A method module only says which peft config it builds."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from tunelab.errors import TunelabError, library_errors
from tunelab.methods.base import Method, task_heads


class PeftMethod(Method):
    def peft_config(self):
        raise NotImplementedError

    def apply(self, model: nn.Module) -> nn.Module:
        from peft import get_peft_model

        targets = self.config.target_modules
        if isinstance(targets, list) and "target_modules" in self.options:
            check_module_names(model, targets, "method.target_modules")
        with library_errors(f"peft ({self.name})", self.config.given_keys("method")):
            config = self.peft_config()
        self.configure(config, model)
        try:
            return get_peft_model(model, config)
        except (TypeError, ValueError) as exc:  # e.g. a layer type the method does not support
            raise TunelabError(f"method.name {self.name!r}: peft cannot apply it to this model ({exc})") from None

    def configure(self, config, model: nn.Module) -> None:
        """Settings every peft method shares: whole modules trained and saved beside the adapter (a
        classification head, embeddings of added tokens); peft keeps the original for disabling."""
        wanted = self.config.modules_to_save
        if wanted:
            check_module_names(model, wanted, "method.modules_to_save")
            config.modules_to_save = list(wanted)
        if self.added_tokens:
            self.train_added_rows(config, model)
        if task_heads(model):  # peft's sequence-classification wrapper trains and saves the head itself
            from peft import TaskType

            config.task_type = TaskType.SEQ_CLS

    def train_added_rows(self, config, model: nn.Module) -> None:
        """The rows of tokens added for the chat template train. LoRA: peft's `trainable_token_indices`, only
        those rows of the embedding (and of an untied lm_head) train and are saved with the adapter (a few KB);
        a tied lm_head follows the embedding. peft offers that for LoRA only, so the other methods train and
        save the embedding and lm_head whole (`modules_to_save`: larger adapter, same result)."""
        from tunelab.models.tokens import embedding_module_names

        names = list(embedding_module_names(model))
        if type(config).__name__ == "LoraConfig":
            config.trainable_token_indices = {name: list(self.added_tokens) for name in names}
        else:
            config.modules_to_save = [*(config.modules_to_save or []), *names]

    def load(self, base: nn.Module, weights_dir: Path, trainable: bool = False) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(weights_dir), is_trainable=trainable)

    def merge(self, model: nn.Module) -> nn.Module:
        return model.merge_and_unload()

    def disable(self, model: nn.Module):
        return model.disable_adapter()


def check_module_names(model: nn.Module, wanted: list[str], key: str) -> None:
    """Each name must be the last part(s) of a module's dotted name (peft's matching rule)."""
    names = [name for name, _ in model.named_modules()]
    for target in wanted:
        if not any(name == target or name.endswith(f".{target}") for name in names):
            raise TunelabError(f"{key}: no module named {target!r} in the model")
