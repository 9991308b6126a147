"""The console command's start-up: the collector paused while the libraries load and their objects frozen after,
bitsandbytes left out of runs that need nothing from it; a process that calls main() itself is left alone."""
import gc
import json
import subprocess
import sys

import pytest

from tunelab.cli.startup import loading_libraries, needs_bitsandbytes
from tunelab.config import validate


def config(model: str = "smollm2-135m-instruct", method: str = "lora", **train):
    return validate({"model": {"path": model}, "data": {"path": "x.json"}, "method": {"name": method},
                     "train": train})


def test_plain_runs_need_no_bitsandbytes(tiny_model_dir, tmp_path):
    assert not needs_bitsandbytes(config())
    assert not needs_bitsandbytes(config(str(tiny_model_dir)))
    assert not needs_bitsandbytes(config(str(tmp_path / "model.gguf")))


@pytest.mark.parametrize("settings", [{"method": "qlora"}, {"optimizer": "adamw_8bit"},
                                      {"optimizer": "paged_adamw_8bit"}])
def test_quantization_and_8bit_optimizers_need_it(settings):
    assert needs_bitsandbytes(config(**settings))


def test_a_base_stored_quantized_or_unknown_needs_it(tiny_model_dir, tmp_path):
    quantized = tmp_path / "quantized"
    quantized.mkdir()
    settings = json.loads((tiny_model_dir / "config.json").read_text(encoding="utf-8"))
    settings["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(settings), encoding="utf-8")
    assert needs_bitsandbytes(config(str(quantized)))
    assert needs_bitsandbytes(config("some-org/some-model"))  # a hub id: its config is not read before loading


def test_a_process_that_calls_main_itself_is_left_alone():
    frozen = gc.get_freeze_count()
    with loading_libraries(config()):
        assert gc.isenabled()
    assert gc.get_freeze_count() == frozen and sys.modules.get("bitsandbytes", True) is not None


CONSOLE = """
import gc, sys
from tunelab.cli import startup
from tunelab.config import validate
startup.console()
with startup.loading_libraries(validate({"data": {"path": "x.json"}})):
    collecting_while_loading = gc.isenabled()
    from tunelab.train import train
from peft.import_utils import is_bnb_available
print(collecting_while_loading, gc.isenabled(), gc.get_freeze_count() > 100_000, is_bnb_available())
"""


def test_the_console_loads_the_libraries_without_collecting_and_without_bitsandbytes():
    done = subprocess.run([sys.executable, "-c", CONSOLE], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["False", "True", "True", "False"], done.stdout + done.stderr
