"""continual.method nullspace on the tiny model: the adapted layers that see the reference data's inputs unchanged
(the first layer's) give exactly the base's outputs on it after training, while the task is learned; every A stays
out of its subspace; methods it cannot keep exact are refused by name."""
import json

import pytest
import torch

from tunelab.config import load_config
from tunelab.continual.nullspace import check_adapters, lora_layers, principal_subspace
from tunelab.errors import TunelabError
from tunelab.train import prepare

STEPS = 6
ENERGY = 1 - 1e-9  # all but the rounding noise of the reference inputs' span


@pytest.fixture()
def reference_file(tmp_path):
    """Plain text of three distinct words: the first layer's inputs on it span a few of the 32 dimensions."""
    path = tmp_path / "reference.jsonl"
    path.write_text(json.dumps({"text": "red blue red green blue red green red blue"}) + "\n", encoding="utf-8")
    return path


LORA = {"name": "lora", "r": 4, "alpha": 8}
ADALORA = {"name": "adalora", "r": 2, "adalora_init_r": 4, "target_modules": ["q_proj", "v_proj"]}


def _config(write_config, model_dir, data, name, continual, method=None):
    return load_config(write_config(model_dir, data, name, continual=continual, method=method or LORA,
                                    train={"max_steps": STEPS, "lr": 5e-2}))


def _first_layer_outputs(model, rows):
    """q_proj, gate_proj ... outputs of decoder layer 0 on the rows, adapter on, and with it disabled (the base)."""
    layers = {n: m for n, m in lora_layers(model).items() if ".layers.0." in n}
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, n=n: seen.__setitem__(n, out.detach().clone()))
             for n, m in layers.items()]
    ids = torch.tensor([rows[0]["input_ids"]])
    try:
        with torch.no_grad():
            model(input_ids=ids)
            tuned = dict(seen)
            with model.disable_adapter():
                model(input_ids=ids)
            base = dict(seen)
    finally:
        for h in hooks:
            h.remove()
    return {n: ((tuned[n] - base[n]).norm() / base[n].norm()).item() for n in layers}


def _trained(write_config, model_dir, data, reference, tmp_path, name, guard, method=LORA):
    continual = {"method": guard, "reference_data": str(reference), "probes": False}
    if guard == "nullspace":
        continual["nullspace_energy"] = ENERGY
    prepared = prepare(_config(write_config, model_dir, data, name, continual, method), tmp_path / name)
    prepared.trainer.train()
    history = [h["loss"] for h in prepared.trainer.state.log_history if "loss" in h]
    return prepared, history[0], history[-1]


@pytest.mark.parametrize("method, adapted", [(LORA, 7), (ADALORA, 2)])
def test_the_old_datas_first_layer_outputs_stay_the_bases_while_the_task_is_learned(
        method, adapted, tiny_model_dir, chat_file, reference_file, write_config, tmp_path):
    prepared, first, last = _trained(write_config, tiny_model_dir, chat_file, reference_file, tmp_path, "ns",
                                     "nullspace", method)
    rows = prepared.continual.setting.reference()
    moved = _first_layer_outputs(prepared.model, rows)
    assert len(moved) == adapted and max(moved.values()) < 1e-5, moved
    task = _first_layer_outputs(prepared.model, [{"input_ids": rows[0]["input_ids"][:1] + [40, 41, 42, 43]}])
    assert max(task.values()) > 1e-3  # other inputs do see the adapter

    unguarded, first_u, last_u = _trained(write_config, tiny_model_dir, chat_file, reference_file, tmp_path, "none",
                                          "none", method)
    assert min(_first_layer_outputs(unguarded.model, rows).values()) > 1e-3  # without it they move
    # it still learns the task, more slowly: the byte-level task and reference texts share most of their tokens here
    assert first - last > 0.2 * (first_u - last_u)


def test_qlora_keeps_the_first_layers_outputs_on_the_old_data(wide_model_dirs, chat_file, reference_file,
                                                              write_config, tmp_path):
    """Over a 4-bit base (bitsandbytes on CPU) the adapted layers' hooks see the same inputs, and B A x = 0 there."""
    prepared, first, last = _trained(write_config, wide_model_dirs["llama"], chat_file, reference_file, tmp_path,
                                     "ns-q", "nullspace", {"name": "qlora"})
    rows = prepared.continual.setting.reference()
    moved = _first_layer_outputs(prepared.model, rows)
    # q/k/v read the embeddings themselves; o, gate, up and down read wider spans, cut at ENERGY in fp32 sums
    own = [value for name, value in moved.items() if name.endswith(("q_proj", "k_proj", "v_proj"))]
    assert len(moved) == 7 and max(own) < 1e-6, moved
    assert max(moved.values()) < 1e-4, moved
    assert last < first
    unguarded, _, _ = _trained(write_config, wide_model_dirs["llama"], chat_file, reference_file, tmp_path, "none-q",
                               "none", {"name": "qlora"})
    assert min(_first_layer_outputs(unguarded.model, rows).values()) > 1e-3


def test_every_a_stays_out_of_its_layers_subspace(tiny_model_dir, chat_file, write_config, tmp_path):
    config = _config(write_config, tiny_model_dir, chat_file, "ns-builtin", {"method": "nullspace", "probes": False})
    prepared = prepare(config, tmp_path / "ns-builtin")
    prepared.trainer.train()
    summary = prepared.continual.summary()["continual"]
    assert summary["methods"] == [{"method": "nullspace", "weight": None}]
    facts = summary["nullspace"]
    assert facts["layers"] == 14 and facts["inputs"] == 8 and facts["energy"] == 0.99  # q,k,v share; gate,up share
    assert 1 <= facts["directions_min"] <= facts["directions_max"] < 64
    projection = next(c for c in prepared.trainer.callback_handler.callbacks if type(c).__name__ == "Projection")
    assert len(projection.pairs) == 14
    for weight, basis in projection.pairs:
        assert weight.abs().max() > 0
        assert (weight @ basis).norm() <= 1e-5 * weight.norm()


def test_principal_subspace_takes_the_fewest_directions_holding_the_energy():
    torch.manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    covariance = rotation @ torch.diag(torch.tensor([50.0, 30, 15, 4, 1, 0], dtype=torch.float64)) @ rotation.T
    assert principal_subspace(covariance, 0.45).shape == (6, 1)  # 50% with one
    assert principal_subspace(covariance, 0.9).shape == (6, 3)   # 95% with three
    assert principal_subspace(covariance, 0.97).shape == (6, 4)  # 99%
    basis = principal_subspace(covariance, 0.9).double()
    assert torch.allclose(basis.T @ basis, torch.eye(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(basis @ basis.T @ rotation[:, :3], rotation[:, :3], atol=1e-5)


@pytest.mark.parametrize("method, train", [({"name": "full"}, {}), ({"name": "ia3"}, {}),
                                           ({"name": "dora", "r": 4, "alpha": 8}, {}),
                                           ({"name": "pissa", "r": 4, "alpha": 8}, {}),
                                           (LORA, {"distributed": "fsdp"})])
def test_what_it_cannot_keep_exact_is_refused_when_the_config_is_read(method, train, tiny_model_dir, chat_file,
                                                                      write_config):
    path = write_config(tiny_model_dir, chat_file, "refused", method=method, train=train,
                        continual={"method": "nullspace", "probes": False})
    says = "shards and flattens the A matrices" if train else f"method {method['name']!r} is not one"
    with pytest.raises(TunelabError, match=f"continual.method 'nullspace'.*{says}"):
        load_config(path)


def test_an_adapter_that_does_not_start_at_zero_is_refused(tiny_model_dir, chat_file, write_config, tmp_path):
    """A run continued from a trained adapter: A x = 0 would change what the model computes before training."""
    prepared = prepare(_config(write_config, tiny_model_dir, chat_file, "start", {"method": "none", "probes": False}),
                       tmp_path / "start")
    layers = lora_layers(prepared.model)
    check_adapters("lora", layers)  # a fresh adapter passes
    with torch.no_grad():
        next(iter(layers.values())).lora_B["default"].weight.fill_(0.1)
    with pytest.raises(TunelabError, match="does not start as the base"):
        check_adapters("lora", layers)


def test_it_has_no_weight(tiny_model_dir, chat_file, write_config):
    with pytest.raises(Exception, match="nullspace has no weight"):
        load_config(write_config(tiny_model_dir, chat_file, "weighted",
                                 continual={"method": "nullspace", "weight": 2.0}))
