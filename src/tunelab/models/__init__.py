"""Model sources (built-in, GGUF, HF directory, hub id) and loading."""
from tunelab.models.device import detect_device, eval_dtype, inference_dtype, resolve_precision
from tunelab.models.loading import load_model, load_tokenizer
from tunelab.models.sources import BUILTIN_MODELS, ResolvedModel, resolve_model

__all__ = [
    "BUILTIN_MODELS", "ResolvedModel", "detect_device", "eval_dtype", "inference_dtype", "load_model", "load_tokenizer",
    "resolve_model", "resolve_precision",
]
