import pytest
import yaml

from tunelab.config import RunConfig, load_config
from tunelab.errors import TunelabError


def write(tmp_path, text: str, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_gets_typed_defaults(tmp_path):
    config = load_config(write(tmp_path, "data:\n  path: builtin:identity\n", "myrun.yaml"))
    assert isinstance(config, RunConfig)
    assert config.model.path == "smollm2-135m-instruct"
    assert config.method.name == "lora" and config.method.target_modules == "all-linear"
    assert config.train.stage == "sft" and config.train.precision == "auto"
    assert config.output.dir == "runs/myrun"


def test_dotted_overrides_are_typed(tmp_path):
    path = write(tmp_path, "data:\n  path: x.json\ntrain:\n  lr: 1.0e-3\n")
    config = load_config(path, ["train.lr=1e-4", "train.epochs=2", "method.target_modules=[q_proj,v_proj]",
                                "output.overwrite=true"])
    assert config.train.lr == pytest.approx(1e-4)
    assert config.train.epochs == 2
    assert config.method.target_modules == ["q_proj", "v_proj"]
    assert config.output.overwrite is True


def test_unknown_key_names_file_line_path_and_suggestion(tmp_path):
    path = write(tmp_path, "data:\n  path: x.json\ntrain:\n  epochs: 2\n  learning_rate: 0.1\n")
    with pytest.raises(TunelabError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{path}:5" in message and "train.learning_rate" in message
    assert "unknown key" in message


def test_typo_gets_did_you_mean(tmp_path):
    path = write(tmp_path, "data:\n  path: x.json\ntrain:\n  epoch: 2\n")
    with pytest.raises(TunelabError, match=r"did you mean 'train.epochs'"):
        load_config(path)


def test_unknown_section_suggests_section(tmp_path):
    path = write(tmp_path, "data:\n  path: x.json\ntrian:\n  epochs: 2\n")
    with pytest.raises(TunelabError, match=r"did you mean 'train'"):
        load_config(path)


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path, "data:\n  path: x.json\ntrain:\n  lr: fast\n")
    with pytest.raises(TunelabError) as err:
        load_config(path)
    assert "train.lr" in str(err.value) and "'fast'" in str(err.value) and f"{path}:4" in str(err.value)


def test_override_with_wrong_type_is_rejected(tmp_path):
    path = write(tmp_path, "data:\n  path: x.json\n")
    with pytest.raises(TunelabError, match="train.batch_size"):
        load_config(path, ["train.batch_size=many"])


@pytest.mark.parametrize("override", ["train.lr", "lr=1", "=3"])
def test_malformed_override(tmp_path, override):
    path = write(tmp_path, "data:\n  path: x.json\n")
    with pytest.raises(TunelabError, match="section.key=value"):
        load_config(path, [override])


def test_missing_data_path(tmp_path):
    with pytest.raises(TunelabError, match=r"data.path: required key is missing"):
        load_config(write(tmp_path, "data: {}\n"))


def test_unknown_method_and_stage_list_the_registry(tmp_path):
    with pytest.raises(TunelabError, match=r"unknown method .lorra.; did you mean .lora."):
        load_config(write(tmp_path, "data:\n  path: x\nmethod:\n  name: lorra\n"))
    with pytest.raises(TunelabError, match=r"unknown stage .sfft.; did you mean .sft."):
        load_config(write(tmp_path, "data:\n  path: x\ntrain:\n  stage: sfft\n"))


def test_enum_values_are_checked(tmp_path):
    with pytest.raises(TunelabError, match=r"train.scheduler"):
        load_config(write(tmp_path, "data:\n  path: x\ntrain:\n  scheduler: exponential\n"))


def test_early_stopping_needs_validation_data(tmp_path):
    with pytest.raises(TunelabError, match="data.val_size"):
        load_config(write(tmp_path, "data:\n  path: x\ntrain:\n  early_stopping_patience: 2\n"))


def test_invalid_yaml_names_line(tmp_path):
    path = write(tmp_path, "data:\n  path: [unclosed\n")
    with pytest.raises(TunelabError, match=rf"{path}:\d+: invalid YAML"):
        load_config(path)


def test_missing_and_empty_config_files(tmp_path):
    with pytest.raises(TunelabError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(TunelabError, match="config file is empty"):
        load_config(write(tmp_path, ""))


def test_resolved_config_round_trips(tmp_path):
    from tunelab.config import dump_config, validate

    config = load_config(write(tmp_path, "data:\n  path: x.json\n"), ["train.lr=3e-4"])
    assert validate(yaml.safe_load(dump_config(config))) == config


def test_a_value_no_member_of_a_union_takes_is_one_problem_at_its_key_and_line(tmp_path):
    """train.piece_tokens is an int >= 0 or "auto": pydantic reports each member; the user reads one key."""
    path = write(tmp_path, "data:\n  path: x.json\ntrain:\n  piece_tokens: -5\n")
    with pytest.raises(TunelabError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:4: train.piece_tokens: ") and message.count("train.piece_tokens") == 1
    assert "greater than or equal to 0, or Input should be 'auto' (got -5)" in message
    assert "constrained-int" not in message and "literal" not in message
    assert load_config(path, ["train.piece_tokens=auto"]).train.piece_tokens == "auto"
    assert load_config(path, ["train.piece_tokens=2048"]).train.piece_tokens == 2048
