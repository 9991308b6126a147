"""Glue between tunelab's typed config and the Hugging Face Trainer."""
