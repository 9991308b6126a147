"""`model:` section — where the base model comes from and how it is loaded."""
from typing import Literal

from pydantic import Field

from tunelab.config.base import Section

DEFAULT_MODEL = "smollm2-135m-instruct"


class ModelConfig(Section):
    path: str = Field(
        DEFAULT_MODEL,
        description="Local HF model directory, hub id, .gguf file, run directory, or a built-in name.",
    )
    gguf_file: str | None = Field(None, description="GGUF file name inside `path` when it is a directory.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = Field(False, description="Run model code shipped with the checkpoint (unsafe).")
    allow_pickle: bool = Field(False, description="Also read weights stored as pickle (.bin/.pt), which can run "
                               "code when loaded; by default only safetensors (or GGUF) are read.")
    attn_implementation: Literal["auto", "sdpa", "eager"] = Field(
        "auto", description="Attention kernel for inference and unpacked training (packed training uses tunelab's).")
