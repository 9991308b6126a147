"""train.piece_tokens: fixed sizes as given, and `auto` sized from the first step's measured activations."""
import pytest
import torch
from transformers import AutoModelForCausalLM, TrainingArguments

from tunelab.data.loading import load_examples
from tunelab.data.packing import PackedCollator, split_packed
from tunelab.data.tokenize import IGNORE, TokenizeStats, tokenize_conversation
from tunelab.models.attention import packed_attention
from tunelab.training import pieces
from tunelab.training.pieces import FIRST, ROUND, PieceSize, auto_tokens
from tunelab.training.trainer import TunelabTrainer


def test_auto_keeps_one_pieces_activations_within_its_share_of_free_memory():
    free = 16 * 2**30
    tokens = auto_tokens(bytes_per_token=600e3, free_bytes=free, max_length=512)
    assert tokens % ROUND == 0
    assert tokens * 600e3 <= free / pieces.SHARE < (tokens + ROUND) * 600e3
    # never fewer than max_length (an example is never cut), however little memory is free
    assert auto_tokens(bytes_per_token=600e3, free_bytes=2**20, max_length=2048) == 2048
    # nothing measured (a step without gradients) or memory unknown: the first size stays
    assert auto_tokens(0.0, free, 512) == FIRST
    assert auto_tokens(600e3, None, 4096) == 4096


def test_a_fixed_size_is_never_measured_or_changed(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    size = PieceSize(300, 128)
    with size.measuring(model):
        pass
    assert size.tokens == 300 and size.bytes_per_token is None


@pytest.fixture()
def batch(tiny_tokenizer, chat_file):
    examples = load_examples(str(chat_file), None, None)
    rows = [tokenize_conversation(tiny_tokenizer, e, 128, TokenizeStats()) for e in examples]
    return PackedCollator()(rows[:8])


def _step(model_dir, batch, tmp_path, row_tokens, max_length):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = TunelabTrainer(model=model, args=TrainingArguments(str(tmp_path), report_to="none", use_cpu=True),
                             packed=True, row_tokens=row_tokens, max_length=max_length)
    count = (batch["labels"][:, 1:] != IGNORE).sum()
    with packed_attention(model):
        loss = trainer.training_step(model, dict(batch), count)
    return trainer, loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_auto_measures_the_first_step_then_sizes_pieces_from_free_memory(tiny_model_dir, batch, tmp_path,
                                                                         monkeypatch):
    tokens = batch["input_ids"].shape[1]
    longest = int(torch.diff(torch.nonzero(batch["position_ids"][0] == 0).flatten(),
                             append=torch.tensor([tokens])).max())
    # so little memory free that only the floor (max_length) fits: later batches run in several pieces
    monkeypatch.setattr(pieces.memory, "available_memory", lambda device: 1)
    trainer, loss, grads = _step(tiny_model_dir, batch, tmp_path, "auto", max_length=longest)
    measured = trainer.pieces.bytes_per_token
    assert measured is not None and measured > 0
    assert trainer.pieces.tokens == longest and len(split_packed(batch, trainer.pieces.tokens)) > 1
    # the first step (one piece of FIRST tokens, the batch fits) is the same step as the whole batch at once
    _, whole_loss, whole_grads = _step(tiny_model_dir, batch, tmp_path, 0, max_length=longest)
    assert loss == pytest.approx(whole_loss, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, whole_grads))
    # the next step runs in pieces of that size, and it is the same step again
    trainer.model.zero_grad(set_to_none=True)
    count = (batch["labels"][:, 1:] != IGNORE).sum()
    with packed_attention(trainer.model):
        again = trainer.training_step(trainer.model, dict(batch), count).item()
    assert trainer.pieces.bytes_per_token == measured  # measured once
    assert again == pytest.approx(whole_loss, rel=1e-5)
    again_grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(again_grads, whole_grads))
