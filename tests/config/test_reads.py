"""A key the chosen method or stage does not read is refused, naming the keys it does read (config.reads)."""
import pytest

from tunelab.config import dump_config, load_config, validate
from tunelab.errors import TunelabError


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  path: x.json\n" + text, encoding="utf-8")
    return path


def test_a_method_key_the_method_does_not_read_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, "method:\n  name: lora\n  num_experts: 8\n")
    with pytest.raises(TunelabError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:5: method.num_experts: method.name 'lora' does not read it (read by: moe-lora)")
    assert "method.r, method.alpha, method.dropout, method.target_modules, method.modules_to_save" in message
    assert load_config(write(tmp_path, "method:\n  name: moe-lora\n  num_experts: 8\n")).method.num_experts == 8


def test_a_stage_key_the_stage_does_not_read_is_refused_also_as_an_override(tmp_path):
    with pytest.raises(TunelabError, match="override 'train.beta=0.2': train.beta: train.stage 'sft' does not read it "
                                           r"\(read by: dpo, kto, orpo, simpo\)"):
        load_config(write(tmp_path, ""), ["train.beta=0.2"])
    assert load_config(write(tmp_path, ""), ["train.stage=dpo", "train.beta=0.2"]).train.beta == 0.2


def test_a_saved_run_config_with_every_key_at_its_default_still_validates(tmp_path):
    config = load_config(write(tmp_path, "method:\n  name: lora\n"))
    again = validate(__import__("yaml").safe_load(dump_config(config)))
    assert again == config  # every key is written, those lora does not read at their defaults
