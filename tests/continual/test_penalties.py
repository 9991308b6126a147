"""The continual-learning methods on the tiny model: EWC equals its formula, pulls toward the anchor and
looks only at what trains; KL to the base starts at zero; replay mixes the share asked for; penalties are
logged; pairs that cannot work are refused when the config is read."""
import json
import math

import pytest
import torch

from tunelab.config import load_config
from tunelab.continual.ewc import normalized
from tunelab.errors import TunelabError
from tunelab.train import prepare, train


def _config(write_config, model_dir, data, name, continual, method=None, **train_keys):
    return load_config(write_config(model_dir, data, name, continual=continual,
                                    method=method or {"name": "lora", "r": 4, "alpha": 8},
                                    train={"max_steps": 2, **train_keys}))


def _term(trainer, name):
    return next(term for term in trainer.loss_terms if getattr(term, "name", None) == name)


def _hand_fisher(model, rows):
    """Per-example gradients by torch.autograd.grad, squared and averaged: the formula, written out."""
    model.eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for row in rows:
        batch = {k: torch.tensor([row[k]]) for k in ("input_ids", "attention_mask", "labels")}
        grads = torch.autograd.grad(model(**batch).loss, list(params.values()), allow_unused=True)
        for (name, _), grad in zip(params.items(), grads):
            if grad is not None:
                total[name] += grad.pow(2)
    return {n: t / len(rows) for n, t in total.items()}


def test_ewc_penalty_equals_the_hand_computation_and_pulls_toward_the_anchor(tiny_model_dir, chat_file,
                                                                             write_config, tmp_path):
    config = _config(write_config, tiny_model_dir, chat_file, "ewc", {"method": "ewc", "weight": 3.0,
                                                                      "fisher_samples": 6})
    prepared = prepare(config, tmp_path)
    model, term = prepared.model, _term(prepared.trainer, "ewc")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(term.importance) == set(params) and all("lora_" in n for n in params)  # only what trains
    rows = prepared.continual.setting.reference()[:6]
    fisher = normalized(_hand_fisher(model, rows))
    anchors = {n: p.detach().clone() for n, p in params.items()}
    torch.manual_seed(1)
    with torch.no_grad():
        for p in params.values():
            p.add_(0.05 * torch.randn_like(p))
    expected = 1.5 * sum(float((fisher[n] * (p - anchors[n]).pow(2)).sum()) for n, p in params.items())
    value = term(model, None, None)
    assert value.item() == pytest.approx(expected, rel=1e-4) and expected > 0
    value.backward()
    for name, p in params.items():  # d/dtheta = weight * F * (theta - anchor): every step moves toward the anchor
        assert torch.allclose(p.grad, 3.0 * fisher[name] * (p.detach() - anchors[name]), atol=1e-6)


def test_kl_to_the_base_is_zero_while_the_adapter_is_zero_and_positive_after(tiny_model_dir, chat_file,
                                                                             write_config, tmp_path):
    config = _config(write_config, tiny_model_dir, chat_file, "kl", {"method": "kl"})
    prepared = prepare(config, tmp_path)
    term = _term(prepared.trainer, "kl")
    assert term(prepared.model, None, None).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for name, p in prepared.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    value = term(prepared.model, None, None)
    assert value.item() > 1e-3 and value.requires_grad


def test_replay_mixes_the_requested_share(tiny_model_dir, chat_file, write_config):
    config = _config(write_config, tiny_model_dir, chat_file, "replay", {"method": "replay", "replay_ratio": 0.25})
    result = train(config)
    assert result.summary["continual"]["replayed_examples"] == 4  # 12 own + 4 replayed: a quarter
    assert result.summary["examples"]["kept"] == 16


def test_penalties_are_logged_and_every_continual_run_measures_forgetting(tiny_model_dir, chat_file,
                                                                         write_config):
    config = _config(write_config, tiny_model_dir, chat_file, "l2sp-ewc",
                     {"method": [{"method": "l2sp", "weight": 0.1}, "ewc"], "fisher_samples": 4})
    result = train(config)
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [line for line in lines if "loss" in line]
    assert logged and all(math.isfinite(line["loss/l2sp"]) and "loss/ewc" in line for line in logged)
    assert logged[0]["loss/l2sp"] == pytest.approx(0.0, abs=1e-8)  # at the anchor on the first step
    assert {"contains", "perplexity"} <= set(result.summary["forgetting"]["base_metrics"])
    assert (result.run_dir / "fisher.safetensors").is_file()  # for the next task
    assert result.summary["continual"]["methods"] == [{"method": "l2sp", "weight": 0.1}, {"method": "ewc", "weight": 0.01}]


def test_a_saved_fisher_is_carried_into_the_next_run(tiny_model_dir, chat_file, write_config, tmp_path):
    from tunelab.continual.ewc import read_fisher

    first = train(_config(write_config, tiny_model_dir, chat_file, "t1", {"method": "ewc", "fisher_samples": 4}))
    saved = read_fisher(str(first.run_dir))
    config = _config(write_config, first.run_dir, chat_file, "t2",
                     {"method": "ewc", "fisher_samples": 4, "fisher": str(first.run_dir)})
    prepared = prepare(config, tmp_path)
    ewc = prepared.continual.methods[0]
    assert all(torch.all(ewc.fisher[name] >= saved[name] - 1e-12) for name in saved)  # the old Fisher is inside


@pytest.mark.parametrize("stage, continual, message", [
    ("ppo", {"method": "ewc"}, "runs its own loop"),
    ("classify", {"method": "kl"}, "compares next-token predictions"),
    ("dpo", {"method": "replay"}, "replay mixes in conversations"),
    ("sft", {"method": ["ewc", "kl"], "weight": 2}, "give each its own"),
])
def test_pairs_that_cannot_work_are_refused_with_the_reason(stage, continual, message, tiny_model_dir, chat_file,
                                                           write_config):
    with pytest.raises(TunelabError, match=message):
        _config(write_config, tiny_model_dir, chat_file, "bad", continual, stage=stage)
