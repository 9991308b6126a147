"""Training options people ask for by name, each through the library that implements it: NEFTune (the Trainer's
hook; ours on packed rows), GaLore/APOLLO (the Trainer's optimizers), SwanLab (the Trainer's callback)."""
import importlib
import json
import socket
from pathlib import Path

import pytest
import torch

from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.train import prepare, train
from tunelab.training.trainer import example_lengths

LLAMAFACTORY = Path(__file__).resolve().parents[1] / "assets" / "llamafactory"
ALPHA = 5.0


def _config(write_config, tiny_model_dir, data, name, method=None, sections=None, **train_settings):
    return load_config(write_config(tiny_model_dir, data, name, method=method or {"name": "lora"},
                                    train={"max_steps": 1, "batch_size": 2, **train_settings}, **(sections or {})))


def _decoder(model):
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.get_decoder()


def _record_embedding_noise(model) -> list[tuple[bool, torch.Tensor, torch.Tensor]]:
    """(train mode, noise / bound for each value, example lengths) of every forward: the first layer's input minus
    the embedding rows of the ids, over NEFTune's bound alpha/sqrt(L*d) for each token's example length L."""
    decoder, seen, ids = _decoder(model), [], {}
    embeddings = decoder.get_input_embeddings()
    embeddings.register_forward_pre_hook(lambda module, args: ids.update(value=args[0]))

    def layer_input(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        lengths = example_lengths(kwargs["position_ids"].expand(hidden.shape[0], -1))
        noise = hidden.detach() - embeddings.weight.detach()[ids["value"]]
        seen.append((module.training, noise / (ALPHA / torch.sqrt(lengths * hidden.shape[-1])), lengths))

    decoder.layers[0].register_forward_pre_hook(layer_input, with_kwargs=True)
    return seen


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "padded"])
def test_neftune_noises_the_embeddings_in_training_and_never_in_evaluation(packing, tiny_model_dir, chat_file,
                                                                         write_config, tmp_path):
    """Padded rows take the Trainer's own hook; packed rows ours, which scales each example by its own length
    (the row's would be the whole batch's)."""
    config = _config(write_config, tiny_model_dir, chat_file, "neftune", {"name": "full"}, {"data": {"val_size": 2}},
                     neftune_alpha=ALPHA, packing=packing, batch_size=4, eval_steps=1)
    prepared = prepare(config, tmp_path / "out")
    seen = _record_embedding_noise(prepared.model)
    prepared.trainer.train()
    training = [(ratio, lengths) for mode, ratio, lengths in seen if mode]
    evaluating = [ratio for mode, ratio, _ in seen if not mode]
    assert training and evaluating
    for ratio, lengths in training:
        assert ratio.abs().max() <= 1 + 1e-4  # within alpha/sqrt(L*d)
        assert ratio.abs().max() > 0.9        # and filling it: uniform over the whole range
    if packing:  # several examples in one row, each noised at its own length's scale (> the row's)
        assert (training[0][1] < training[0][1].shape[1]).all()
    assert all(ratio.abs().max() == 0 for ratio in evaluating)
    assert not prepared.model.get_input_embeddings()._forward_hooks  # the hook goes when training ends


def test_neftune_run_finishes_with_an_adapter(tiny_model_dir, chat_file, write_config):
    result = train(_config(write_config, tiny_model_dir, chat_file, "neftune-lora", neftune_alpha=ALPHA,
                           max_steps=2))
    assert result.summary["global_step"] == 2 and result.summary["train_loss"] > 0


def test_neftune_acts_in_a_trl_stage(tiny_model_dir, write_config, tmp_path):
    """DPO's TRL config is a TrainingArguments: the Trainer's hook noises the policy's embeddings."""
    config = load_config(write_config(tiny_model_dir, LLAMAFACTORY, "neftune-dpo", data={"dataset": "dpo_en_demo"},
                                      train={"stage": "dpo", "max_steps": 1, "batch_size": 2,
                                             "neftune_alpha": ALPHA}))
    prepared = prepare(config, tmp_path / "out")
    seen = _record_embedding_noise(prepared.model)
    prepared.trainer.train()
    assert any(mode and ratio.abs().max() > 0.9 for mode, ratio, _ in seen)


def test_neftune_is_refused_where_the_policy_samples(tmp_path):
    path = tmp_path / "grpo.yaml"
    path.write_text("data:\n  path: x.json\ntrain:\n  stage: grpo\n  reward: length\n  neftune_alpha: 5\n")
    with pytest.raises(TunelabError, match=r"train.neftune_alpha: train.stage 'grpo' does not read it"):
        load_config(path)


# train.optimizer -> the class its package exports (several are named AdamW inside)
PROJECTIONS = {"galore_adamw": ("galore_torch", "GaLoreAdamW"), "galore_adafactor": ("galore_torch", "GaLoreAdafactor"),
               "apollo_adamw": ("apollo_torch", "APOLLOAdamW")}


@pytest.mark.parametrize("method", [{"name": "full"}, {"name": "freeze", "trainable_layers": 1}],
                         ids=["full", "freeze"])
@pytest.mark.parametrize("optimizer", sorted(PROJECTIONS))
def test_projection_optimizer_projects_the_trained_matrices(optimizer, method, tiny_model_dir, chat_file,
                                                           write_config, tmp_path):
    config = _config(write_config, tiny_model_dir, chat_file, optimizer, method, optimizer=optimizer,
                     projection={"rank": 4, "update_interval": 1, "target_modules": ["q_proj", "down_proj"]})
    prepared = prepare(config, tmp_path / "out")
    trainer, model = prepared.trainer, prepared.model
    optimizer_in_use = trainer.create_optimizer()
    package, name = PROJECTIONS[optimizer]
    assert type(optimizer_in_use) is getattr(importlib.import_module(package), name)
    trainer.train()
    projected = {name for name, parameter in model.named_parameters()
                 if "projector" in optimizer_in_use.state.get(parameter, {})}
    trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    targets = {name for name in trained if name.endswith(("q_proj.weight", "down_proj.weight"))}
    assert targets and projected == targets  # every trained target, nothing else
    assert {group.get("rank") for group in optimizer_in_use.param_groups} == {None, 4}


def test_projection_all_linear_reaches_every_linear_weight(tiny_model_dir, chat_file, write_config, tmp_path):
    config = _config(write_config, tiny_model_dir, chat_file, "all-linear", {"name": "full"},
                     optimizer="galore_adamw", projection={"rank": 4})
    prepared = prepare(config, tmp_path / "out")
    optimizer = prepared.trainer.create_optimizer()
    projected = [group for group in optimizer.param_groups if group.get("rank") == 4][0]["params"]
    linear = [m.weight for m in prepared.model.modules() if isinstance(m, torch.nn.Linear)]
    assert {id(p) for p in projected} == {id(p) for p in linear if p is not prepared.model.get_input_embeddings()
                                          .weight}  # the tiny model's head is tied to the embeddings


@pytest.mark.parametrize("method", ["lora", "dora", "qlora", "adapter"])
def test_projection_optimizer_is_refused_with_an_adapter(method, tiny_model_dir, chat_file, write_config):
    with pytest.raises(TunelabError, match=rf"train.optimizer 'apollo_adamw' with method.name '{method}': "
                                           "GaLore/APOLLO project the gradients of full weight matrices"):
        load_config(write_config(tiny_model_dir, chat_file, "refused", method={"name": method},
                                 train={"optimizer": "apollo_adamw"}))


def test_projection_settings_without_a_projection_optimizer_are_refused(tiny_model_dir, chat_file, write_config):
    with pytest.raises(TunelabError, match=r"train.projection: read only by the GaLore/APOLLO optimizers"):
        load_config(write_config(tiny_model_dir, chat_file, "unread", method={"name": "full"},
                                 train={"projection": {"rank": 8}}))


def _swanlab_scalars(log_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of each `key` record in the offline run file swanlab wrote (read with swanlab's own reader)."""
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record
    from swanlab.sdk.internal.core_python.store import DataStoreReader

    [path] = log_dir.glob("run-*/run-*.swanlab")
    reader, found = DataStoreReader(), []
    reader.open(path)
    for data in reader:
        record = Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "scalar" and record.scalar.key == key:
            found.append((record.scalar.step, record.scalar.value.number))
    reader.close()
    return found


def test_swanlab_keeps_the_losses_offline_in_the_run_folder(tiny_model_dir, chat_file, write_config, tmp_path, monkeypatch):
    swanlab = pytest.importorskip("swanlab")
    connections = []
    monkeypatch.setattr(socket.socket, "connect", lambda sock, address: connections.append(address))
    monkeypatch.setenv("SWANLAB_MODE", "offline")
    monkeypatch.delenv("SWANLAB_LOG_DIR", raising=False)  # then the run's own folder holds the log
    try:
        result = train(_config(write_config, tiny_model_dir, chat_file, "swanlab", report_to="swanlab",
                               max_steps=2, logging_steps=1))
    finally:
        swanlab.finish()  # transformers' callback leaves the run open for the process's exit
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = _swanlab_scalars(result.run_dir / "swanlog", "train/loss")
    assert [step for step, _ in logged] == [1, 2]
    assert [value for _, value in logged] == pytest.approx(losses)
    assert not connections
