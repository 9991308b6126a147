"""Facts the schema carries about its keys drive behaviour: resume accepts a change of a free key and refuses any
other; a cache-key field changes the tokenized-data cache folder and another field does not; the UI form and the
optional-package check follow the marks too."""
import pytest
import yaml

from tunelab.config import dump_config, load_config
from tunelab.config.keys import cache_key_values, free_keys
from tunelab.data.cache import cache_key
from tunelab.errors import TunelabError
from tunelab.runs.resume import _check_same_run


def config(tmp_path, *overrides):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": "x.json"}, "method": {"name": "lora"}}), encoding="utf-8")
    return load_config(path, list(overrides))


def test_resume_accepts_free_keys_and_refuses_the_rest(tmp_path):
    earlier = tmp_path / "earlier.yaml"
    earlier.write_text(dump_config(config(tmp_path)), encoding="utf-8")
    for free in ("train.logging_steps=2", "train.report_to=none", "output.overwrite=true", "data.cache=false",
                 "train.save_total_limit=5"):
        _check_same_run(earlier, config(tmp_path, free))
    for fixed in ("train.lr=0.1", "method.r=4", "train.max_length=64", "data.thinking=drop"):
        with pytest.raises(TunelabError, match=f"differs from the run being resumed .* in {fixed.split('=')[0]}"):
            _check_same_run(earlier, config(tmp_path, fixed))
    assert {"train.resume", "output", "eval", "data.cache"} <= set(free_keys())


def test_a_cache_key_field_changes_the_cache_folder_and_another_does_not(tmp_path):
    def folder(*overrides):
        return cache_key({**cache_key_values(config(tmp_path, *overrides)), "data": {}, "tokenizer": "t"})

    base = folder()
    for same in ("train.lr=0.1", "method.r=4", "train.logging_steps=1", "train.report_to=none"):
        assert folder(same) == base, same
    for other in ("train.max_length=64", "data.dataset=a", "data.thinking=drop", "data.train_thinking=false",
                  "train.stage=pretrain", "continual.method=replay"):
        assert folder(other) != base, other


def test_the_train_form_shows_what_the_schema_marks(monkeypatch):
    """FORM / ADVANCED on a field place it in the UI's train form; moving the mark moves the widget."""
    from tunelab.config.base import FORM
    from tunelab.config.train import TrainConfig
    from tunelab.ui.fields import train_fields

    def placed():
        return {f.key: f.always for f in train_fields()}

    assert placed()["train.lr"] is True and placed()["train.seed"] is False and "train.resume" not in placed()
    monkeypatch.setattr(TrainConfig.model_fields["seed"], "json_schema_extra", FORM)
    monkeypatch.setattr(TrainConfig.model_fields["resume"], "json_schema_extra", {"form_advanced": True})
    assert placed()["train.seed"] is True and placed()["train.resume"] is False


def test_a_value_whose_package_is_missing_is_refused_by_the_schema_mark(tmp_path, monkeypatch):
    from tunelab.config.base import backends
    from tunelab.config.train import TrainConfig
    from tunelab.training.arguments import check_backends

    chosen = config(tmp_path, "train.optimizer=sgd")
    check_backends(chosen)
    monkeypatch.setattr(TrainConfig.model_fields["optimizer"], "json_schema_extra",
                        backends(sgd="no_such_package_for_tunelab"))
    with pytest.raises(TunelabError, match="train.optimizer: 'sgd' needs the package no_such_package_for_tunelab"):
        check_backends(chosen)
