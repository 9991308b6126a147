import importlib.util

import pytest

from tunelab.config import validate
from tunelab.errors import TunelabError
from tunelab.training.arguments import check_backends, training_arguments
from tunelab.training.split import split_rows


def config(**train):
    return validate({"data": {"path": "x.json", "val_size": train.pop("val_size", 0)}, "train": train})


def test_user_settings_reach_the_trainer(tmp_path):
    args = training_arguments(config(lr=3e-4, batch_size=2, grad_accum=4, warmup=0.1, scheduler="linear",
                                     precision="fp32", max_steps=7, seed=3), tmp_path, has_eval=False)
    assert args.learning_rate == 3e-4 and args.per_device_train_batch_size == 2
    assert args.gradient_accumulation_steps == 4 and args.warmup_steps == 0.1 and args.max_steps == 7
    assert args.lr_scheduler_type == "linear" and args.seed == 3 and not args.bf16
    assert args.eval_strategy == "no" and args.include_num_input_tokens_seen == "non_padding"


def test_early_stopping_saves_where_it_evaluates(tmp_path):
    args = training_arguments(config(early_stopping_patience=2, eval_steps=5, val_size=0.2, precision="fp32"),
                              tmp_path, has_eval=True)
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    assert args.save_strategy == args.eval_strategy == "steps" and args.save_steps == args.eval_steps == 5


def test_missing_optional_backend_is_named(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TunelabError, match=r"train.optimizer: 'adamw_8bit' needs the package bitsandbytes"):
        check_backends(config(optimizer="adamw_8bit"))
    check_backends(config(optimizer="adamw"))


@pytest.mark.parametrize("val_size, expected", [(0.25, 3), (2, 2), (50, 11), (0, 0)])
def test_split_is_a_fraction_or_a_count_and_reproducible(val_size, expected):
    rows = [{"i": i} for i in range(12)]
    train, val = split_rows(rows, val_size, seed=1)
    assert len(val) == expected and len(train) + len(val) == 12
    assert split_rows(rows, val_size, seed=1) == (train, val)


def test_bf16_on_a_cpu_is_accepted(tmp_path):
    """transformers refuses bf16 without a GPU unless told the CPU is meant; users asking bf16 on a CPU get it."""
    args = training_arguments(config(precision="bf16"), tmp_path, has_eval=False)
    assert args.bf16


@pytest.mark.cpu_precision
def test_precision_auto_trains_in_bf16_only_where_the_cpu_has_it_and_the_switch_allows(tmp_path, monkeypatch):
    from tunelab.models.device import _cpu_flags_have_bf16

    monkeypatch.delenv("TUNELAB_CPU_BF16", raising=False)
    native = training_arguments(config(precision="auto"), tmp_path, has_eval=False)
    assert native.bf16 is _cpu_flags_have_bf16() and not native.fp16
    monkeypatch.setenv("TUNELAB_CPU_BF16", "0")
    assert not training_arguments(config(precision="auto"), tmp_path, has_eval=False).bf16


def test_packed_runs_count_every_token_and_keep_random_order(tmp_path):
    """Counting "non_padding" by pad id would skip every EOS (pad == EOS); packed rows hold no padding.
    Unpacked batches group similar lengths (least padding); packed ones stay in random order unless asked."""
    packed = training_arguments(config(precision="fp32"), tmp_path, has_eval=False, packing=True)
    padded = training_arguments(config(precision="fp32"), tmp_path, has_eval=False, packing=False)
    assert packed.include_num_input_tokens_seen == "all" and packed.train_sampling_strategy == "random"
    assert padded.include_num_input_tokens_seen == "non_padding"
    assert padded.train_sampling_strategy == "group_by_length"


@pytest.mark.parametrize("packing", [True, False])
@pytest.mark.parametrize("asked", [True, False])
def test_group_by_length_is_what_the_config_asks(tmp_path, packing, asked):
    arguments = training_arguments(config(precision="fp32", group_by_length=asked), tmp_path, has_eval=False,
                                   packing=packing)
    assert arguments.train_sampling_strategy == ("group_by_length" if asked else "random")


@pytest.mark.parametrize("key, value, package", [("optimizer", "galore_adamw", "galore_torch"),
                                                 ("optimizer", "apollo_adamw", "apollo_torch"),
                                                 ("report_to", "swanlab", "swanlab")])
def test_missing_training_backend_is_named_before_anything_loads(key, value, package, monkeypatch):
    raw = {"data": {"path": "x.json"}, "method": {"name": "full"}, "train": {key: value}}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TunelabError, match=rf"train.{key}: '{value}' needs the package {package}"):
        check_backends(validate(raw))


def test_projection_settings_reach_the_trainer_as_its_optim_args(tmp_path):
    raw = {"data": {"path": "x.json"}, "method": {"name": "full"},
           "train": {"optimizer": "apollo_adamw", "precision": "fp32",
                     "projection": {"rank": 8, "update_interval": 50, "target_modules": "q_proj"}}}
    args = training_arguments(validate(raw), tmp_path, has_eval=False)
    assert args.optim == "apollo_adamw" and args.optim_target_modules == ["q_proj"]
    assert args.optim_args == "rank=8,update_proj_gap=50,proj_type=std"  # scale: the optimizer's own default
    plain = training_arguments(config(optimizer="adamw_torch", precision="fp32"), tmp_path, has_eval=False)
    assert plain.optim == "adamw_torch" and plain.optim_target_modules is None and plain.neftune_noise_alpha is None


def test_a_cuda_only_optimizer_is_refused_without_a_gpu(monkeypatch):
    import tunelab.training.arguments as arguments

    monkeypatch.setattr(arguments, "detect_device", lambda: "cpu")
    raw = {"data": {"path": "x.json"}, "method": {"name": "full"}, "train": {"optimizer": "galore_adamw_8bit"}}
    with pytest.raises(TunelabError, match=r"train.optimizer: 'galore_adamw_8bit' needs a CUDA GPU"):
        check_backends(validate(raw))
