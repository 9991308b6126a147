"""One tiny LoRA run, overfit on a single answer so its adapter visibly changes the logits, merged once;
shared by the merge, check and GGUF tests."""
from __future__ import annotations

from pathlib import Path

import pytest

ANSWER = "My name is Quill."


@pytest.fixture(scope="session")
def lora_run(overfit_lora_run) -> Path:
    return overfit_lora_run("export-run", ANSWER, [f"What is your name? ({i})" for i in range(8)])


@pytest.fixture(scope="session")
def merged_dir(lora_run, tmp_path_factory) -> Path:
    from tunelab.runs.merge import merge_run

    return merge_run(lora_run, tmp_path_factory.mktemp("merged") / "model")
