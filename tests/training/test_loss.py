"""The chunked, labels-only loss equals the plain causal LM loss, in value and gradients."""
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from tunelab.data.tokenize import IGNORE
from tunelab.training.loss import causal_lm_loss_sum


def _plain(hidden, weight, labels):
    logits = hidden @ weight.T
    return F.cross_entropy(logits[:, :-1].reshape(-1, weight.shape[0]).float(), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


@pytest.mark.parametrize("weight_trains", [False, True])
def test_chunked_loss_and_gradients_equal_the_plain_ones(weight_trains):
    torch.manual_seed(0)
    hidden = torch.randn(2, 37, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=weight_trains)
    labels = torch.randint(0, 50, (2, 37))
    labels[:, :9] = IGNORE
    labels[1, 20:] = IGNORE

    expected = _plain(hidden, weight, labels)
    expected.backward()
    grads = hidden.grad.clone(), (weight.grad.clone() if weight_trains else None)
    hidden.grad = None
    weight.grad = None

    got, count = causal_lm_loss_sum(hidden, weight, labels, chunk=7)
    (got * 0.5).backward()
    assert count == int((labels[:, 1:] != IGNORE).sum())
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.allclose(hidden.grad, grads[0] * 0.5, atol=1e-4)
    if weight_trains:
        assert torch.allclose(weight.grad, grads[1] * 0.5, atol=1e-4)


@pytest.mark.parametrize("vocab", [50, 64])  # a second vocabulary in one process: the kept buffers are remade
def test_under_bf16_autocast_the_kept_buffers_give_the_plain_bf16_loss_and_gradients(vocab):
    """Chunks of 7 rows over 3 calls (the last chunk partial): the logits and weight-gradient buffers are reused,
    and loss and gradients match autocast's plain loss (bf16 matmuls, fp32 cross-entropy) within bf16 rounding."""
    torch.manual_seed(vocab)
    weight = torch.randn(vocab, 16, requires_grad=True)
    for call in range(3):
        hidden = torch.randn(2, 30 + call, 16, requires_grad=True)
        labels = torch.randint(0, vocab, hidden.shape[:2])
        labels[:, :5] = IGNORE
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected = _plain(hidden, weight, labels)
        expected.backward()
        grads = hidden.grad.clone(), weight.grad.clone()
        hidden.grad = weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, _ = causal_lm_loss_sum(hidden, weight, labels, chunk=7)
        got.backward()
        eps = torch.finfo(torch.bfloat16).eps
        assert abs(got.item() - expected.item()) <= 4 * eps * abs(expected.item())
        for mine, plain in zip((hidden.grad, weight.grad), grads):
            assert ((mine - plain).norm() / plain.norm()).item() <= 4 * eps
        weight.grad = None


def test_no_grad_path_and_empty_labels():
    torch.manual_seed(1)
    hidden, weight = torch.randn(1, 10, 8), torch.randn(20, 8)
    labels = torch.randint(0, 20, (1, 10))
    with torch.no_grad():
        got, _ = causal_lm_loss_sum(hidden, weight, labels, chunk=3)
    assert torch.allclose(got, _plain(hidden, weight, labels), atol=1e-4)
    none, count = causal_lm_loss_sum(hidden, weight, torch.full((1, 10), IGNORE))
    assert count == 0 and none.item() == 0.0


PEAK_SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    from tunelab.training.loss import causal_lm_loss_sum
    torch.manual_seed(0)
    tokens, vocab = 4096, 50000           # full fp32 logits: 4096 x 50000 x 4 B = 819 MB
    hidden = torch.randn(1, tokens, 64, requires_grad=True)
    weight = torch.randn(vocab, 64)
    labels = torch.randint(0, vocab, (1, tokens))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.argv[1] == "fused":
        loss, n = causal_lm_loss_sum(hidden, weight, labels)
    else:
        logits = (hidden @ weight.T)[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), labels[:, 1:].reshape(-1), reduction="sum")
    loss.backward()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
""")


def _peak_mb(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_fused_loss_never_holds_the_full_logits():
    """The plain loss needs > 800 MB here (logits + their gradient); the chunked one a few chunks."""
    fused, plain = _peak_mb("fused"), _peak_mb("plain")
    assert plain > 800
    assert fused < 400, (fused, plain)


def test_the_head_is_cast_once_while_it_is_unchanged():
    """A tied fp32 head is cast to the compute dtype once, not per packed piece; a changed head is cast anew."""
    from tunelab.training.loss import _cast

    weight = torch.nn.Parameter(torch.randn(50, 16), requires_grad=False)
    first = _cast(weight, torch.bfloat16)
    assert _cast(weight, torch.bfloat16) is first and torch.equal(first, weight.to(torch.bfloat16))
    with torch.no_grad():
        weight.add_(1.0)  # an optimizer step, or keep_starting_values' copy_
    stepped = _cast(weight, torch.bfloat16)
    assert stepped is not first and torch.equal(stepped, weight.to(torch.bfloat16))
    weight.data = torch.randn(50, 16)  # values swapped in through .data (a new storage)
    assert torch.equal(_cast(weight, torch.bfloat16), weight.to(torch.bfloat16))
    assert _cast(weight, torch.float32) is weight


def test_casts_of_dropped_heads_are_not_kept():
    import gc

    from tunelab.training.loss import _CASTS, _cast

    heads = [torch.randn(8, 4) for _ in range(6)]
    for head in heads:
        _cast(head, torch.bfloat16)
    assert len(_CASTS.entries) <= _CASTS.LIMIT
    del heads, head
    gc.collect()
    _cast(torch.randn(8, 4), torch.bfloat16)
    assert len(_CASTS.entries) == 1


def test_the_end_of_training_drops_the_kept_head_casts():
    from tunelab.training.loss import _CASTS, _cast, free_scratch

    head = torch.randn(8, 4)
    _cast(head, torch.bfloat16)
    free_scratch()
    assert not _CASTS.entries
