"""Weights stored as pickle are not read unless model.allow_pickle: unpickling can run code."""
import shutil

import pytest

from tunelab.config.model import ModelConfig
from tunelab.errors import TunelabError
from tunelab.models import load_model, resolve_model


@pytest.fixture(scope="module")
def pickled_model_dir(tiny_model_dir, tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("pickled")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.save_pretrained(folder)  # transformers 5 no longer writes pickle: written the old way by hand
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, folder / name)
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    return folder


def test_pickle_weights_are_refused_by_default(pickled_model_dir):
    resolved = resolve_model(str(pickled_model_dir))
    with pytest.raises(TunelabError, match=r"its weights are pickle files \(pytorch_model.bin\).*"
                                           r"model.allow_pickle=true"):
        load_model(resolved, ModelConfig(path=str(pickled_model_dir)))


def test_allow_pickle_reads_them(pickled_model_dir):
    resolved = resolve_model(str(pickled_model_dir))
    model = load_model(resolved, ModelConfig(path=str(pickled_model_dir), allow_pickle=True))
    assert model.config.num_hidden_layers == 2


def test_safetensors_models_load_as_before(tiny_model_dir):
    assert load_model(resolve_model(str(tiny_model_dir)), ModelConfig(path=str(tiny_model_dir))) is not None


def test_train_refuses_pickle_with_one_line(pickled_model_dir, chat_file, write_config, capsys):
    from tunelab.cli.main import main

    assert main(["train", str(write_config(pickled_model_dir, chat_file, "pickled"))]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "model.allow_pickle=true" in err[0]
