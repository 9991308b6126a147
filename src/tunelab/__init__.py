"""tunelab: fine-tune large language models on any hardware."""
__version__ = "0.1.0"
