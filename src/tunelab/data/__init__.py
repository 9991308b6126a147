"""Data readers: user data files (alpaca, sharegpt, OpenAI messages, text; LLaMA-Factory directories)
to one canonical form. Use `load_examples`."""

from tunelab.data.loading import load_examples

__all__ = ["load_examples"]
