"""Data readers: user data files (alpaca, sharegpt, OpenAI messages, text; LLaMA-Factory directories)
to one canonical form. Use `load_examples`."""

from tunelab.data import classification  # noqa: F401  (registers its format)
from tunelab.data import preference  # noqa: F401  (registers its formats)
from tunelab.data.loading import load_examples

__all__ = ["load_examples"]
