"""KL to the base with the base's distributions cached: equal to the exact KL when top-k covers the vocabulary
(value and gradients), never above it when it does not, the cache reused across runs with the same reference set
and base and rebuilt for another; the reference rows joined to the packed task forward give the same value as
the term's own forward; accumulation takes the step's rows in shares."""
import logging

import pytest
import torch

from tunelab.config import load_config
from tunelab.continual import targets as targets_module
from tunelab.continual.kl import kl_full, kl_top_k
from tunelab.continual.targets import log_rest, top_k
from tunelab.data.packing import PackedCollator
from tunelab.train import prepare

# Same rows, same forward: the only differences are float32 sums over a 400-token vocabulary
SAME = 1e-5


def _prepared(write_config, model_dir, data, tmp_path, name, **continual):
    config = load_config(write_config(model_dir, data, name, continual={"method": "kl", **continual},
                                      method={"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0}))
    return prepare(config, tmp_path / name)


def _kl(trainer):
    return next(term for term in trainer.loss_terms if getattr(term, "name", None) == "kl")


def _move_adapter(model, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.3 * torch.randn_like(p))


def _value_and_grads(term, model):
    term.cursor, term.share = 0, 1.0
    model.zero_grad(set_to_none=True)
    value = term(model, None, None)
    value.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return value.item(), grads


def test_cached_kl_with_the_whole_vocabulary_equals_the_exact_kl(tiny_model_dir, chat_file, write_config, tmp_path,
                                                                  tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    cached = _prepared(write_config, tiny_model_dir, chat_file, tmp_path, "cached", kl_top_k=vocab)
    exact = _prepared(write_config, tiny_model_dir, chat_file, tmp_path, "exact", kl_top_k=0)
    assert _kl(exact.trainer).targets is None and _kl(cached.trainer).targets.ids.shape[1] == vocab
    for prepared in (cached, exact):
        _move_adapter(prepared.model)
    cached_value, cached_grads = _value_and_grads(_kl(cached.trainer), cached.model)
    exact_value, exact_grads = _value_and_grads(_kl(exact.trainer), exact.model)
    assert exact_value > 1e-3
    weight = _kl(exact.trainer).weight  # the KL itself agrees to SAME; the term is weight times it
    assert cached_value / weight == pytest.approx(exact_value / weight, abs=SAME)
    assert cached_grads.keys() == exact_grads.keys() and cached_grads
    for name, grad in exact_grads.items():
        assert torch.allclose(cached_grads[name], grad, atol=SAME, rtol=1e-4), name


def test_top_k_kl_never_exceeds_the_exact_kl_and_is_zero_for_equal_distributions():
    torch.manual_seed(0)
    base, tuned = torch.randn(50, 300) * 3, torch.randn(50, 300) * 3
    exact = kl_full(base, tuned)
    for k in (1, 8, 32, 299):
        assert 0 <= kl_top_k(*top_k(base, k), tuned) <= exact + 1e-6
    assert kl_top_k(*top_k(base, 300), tuned) == pytest.approx(exact.item(), abs=SAME)
    assert kl_top_k(*top_k(base, 8), base).item() == pytest.approx(0.0, abs=SAME)


def test_the_rest_mass_stays_finite_when_the_top_tokens_hold_everything():
    logp = torch.log_softmax(torch.tensor([[50.0, 0.0, 0.0]]), dim=-1)
    assert torch.isfinite(log_rest(logp[:, :1])).all() and torch.isfinite(log_rest(logp)).all()


def test_the_cache_is_reused_for_the_same_reference_set_and_base_and_rebuilt_for_another(
        tiny_model_dir, chat_file, write_config, tmp_path, monkeypatch, caplog):
    built = []
    real = targets_module.compute_targets

    def counting(*args, **kwargs):
        built.append(args[3])  # k
        return real(*args, **kwargs)

    monkeypatch.setattr("tunelab.continual.kl.compute_targets", counting)
    with caplog.at_level(logging.INFO, logger="tunelab"):
        first = _kl(_prepared(write_config, tiny_model_dir, chat_file, tmp_path, "one", kl_top_k=16).trainer)
        again = _kl(_prepared(write_config, tiny_model_dir, chat_file, tmp_path, "two", kl_top_k=16).trainer)
    assert built == [16] and "base log-probs from the cache" in caplog.text
    assert torch.equal(first.targets.ids, again.targets.ids) and torch.equal(first.targets.logp, again.targets.logp)
    _prepared(write_config, tiny_model_dir, chat_file, tmp_path, "k8", kl_top_k=8)
    _prepared(write_config, tiny_model_dir, chat_file, tmp_path, "other-reference", kl_top_k=16,
              reference_data=str(chat_file))
    assert built == [16, 8, 16]


def test_reference_rows_joined_to_the_packed_task_forward_give_the_terms_own_value(tiny_model_dir, chat_file,
                                                                                   write_config, tmp_path):
    prepared = _prepared(write_config, tiny_model_dir, chat_file, tmp_path, "joined")
    trainer, model, term = prepared.trainer, prepared.model, _kl(prepared.trainer)
    assert term.joins_forward and trainer.fused is not None
    _move_adapter(model)
    model.train()
    own, _ = _value_and_grads(term, model)
    batch = PackedCollator()([{k: row[k] for k in ("input_ids", "labels")} for row in trainer.train_dataset[:3]])
    term.cursor, trainer.term_share, trainer.term_values = 0, 1.0, {}
    handed, real = [], term.hand_over
    term.hand_over = lambda hidden: (handed.append(hidden.shape), real(hidden))
    loss = trainer.compute_loss(model, batch)
    tokens = sum(len(row["input_ids"]) for row in term.rows[: term.per_step])
    assert handed == [torch.Size([1, tokens, 32])]  # the step's rows went through the task batch's forward
    assert term.cursor == term.per_step and term.handed is None  # ... and were used, not drawn again
    assert trainer.term_values["kl"][0] == pytest.approx(own, abs=SAME)
    assert torch.isfinite(loss)


def test_with_accumulation_each_call_takes_its_share_of_the_steps_rows(tiny_model_dir, chat_file, write_config,
                                                                      tmp_path):
    config = load_config(write_config(tiny_model_dir, chat_file, "accumulated",
                                      continual={"method": "kl", "kl_batch_size": 4},
                                      train={"max_steps": 1, "batch_size": 2, "grad_accum": 2}))
    prepared = prepare(config, tmp_path / "accumulated")
    prepared.trainer.train()
    term = _kl(prepared.trainer)
    assert prepared.trainer.term_share == 0.5 and term.share == 0.5
    assert term.cursor == 4  # two calls of two rows: the step's four, not four per call
