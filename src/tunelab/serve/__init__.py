"""Inference: the chat engine shared by generate, chat and (later) the server."""
from tunelab.serve.engine import ChatEngine, GenerationSettings

__all__ = ["ChatEngine", "GenerationSettings"]
