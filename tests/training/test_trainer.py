"""The trainer: packed and padded runs train the same thing, the fused loss is the model's own loss,
and `batch_size` keeps meaning examples per step whatever the layout."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, TrainingArguments

from tunelab.config import load_config
from tunelab.data.loading import load_examples
from tunelab.data.packing import PackedCollator
from tunelab.data.tokenize import IGNORE, TokenizeStats, tokenize_conversation
from tunelab.models.attention import packed_attention
from tunelab.train import train
from tunelab.training.trainer import TunelabTrainer


def _first_loss(run_dir):
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])


@pytest.fixture()
def rows(tiny_tokenizer, chat_file):
    examples = load_examples(str(chat_file), None, None)
    examples[3]["messages"][-1]["content"] = "A much longer answer, so that lengths differ across the batch."
    return [tokenize_conversation(tiny_tokenizer, e, 128, TokenizeStats()) for e in examples]


def test_packed_and_padded_runs_agree_at_step_zero(tiny_model_dir, chat_file, write_config):
    common = {"max_steps": 1, "batch_size": 12, "logging_steps": 1}
    packed = train(load_config(write_config(tiny_model_dir, chat_file, "packed", train={**common, "packing": True})))
    padded = train(load_config(write_config(tiny_model_dir, chat_file, "padded", train={**common, "packing": False})))
    a, b = _first_loss(packed.run_dir), _first_loss(padded.run_dir)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    assert a["tokens"] == b["tokens"]  # real tokens counted the same; EOS (== pad) counted in both


def test_fused_loss_equals_the_models_own_loss(tiny_model_dir, tiny_tokenizer, rows, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    padded = DataCollatorForSeq2Seq(tiny_tokenizer, padding=True, label_pad_token_id=IGNORE)(rows[:6])
    expected = model(**padded).loss
    trainer = TunelabTrainer(model=model, args=TrainingArguments(str(tmp_path), report_to="none", use_cpu=True),
                             packed=True)
    assert trainer.fused is not None
    with packed_attention(model):
        got = trainer.compute_loss(model, PackedCollator()(rows[:6]))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_packing_keeps_examples_per_step(tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "steps",
                                      train={"max_steps": 0, "epochs": 2, "batch_size": 4, "packing": True}))
    result = train(config)
    assert result.summary["global_step"] == 6  # 12 examples / 4 per step x 2 epochs


def test_packed_evaluation_reports_eval_loss(tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "eval", data={"val_size": 0.25},
                                      train={"packing": True}))
    assert train(config).summary["eval_loss"] > 0


def test_training_restores_the_attention_implementation(tiny_model_dir, chat_file, write_config):
    result = train(load_config(write_config(tiny_model_dir, chat_file, "restore")))
    config = json.loads((result.run_dir / "model" / "adapter_config.json").read_text())
    assert "tunelab_packed" not in json.dumps(config)
    for checkpoint in result.run_dir.glob("checkpoint-*"):
        for name in checkpoint.glob("*.json"):
            assert "tunelab_packed" not in name.read_text()


def test_running_a_batch_in_pieces_gives_the_same_loss_and_gradients(tiny_model_dir, rows, tmp_path):
    """Pieces of at most row_tokens tokens with gradients accumulated: the same step as the whole batch."""
    from tunelab.data.packing import split_packed

    batch = PackedCollator()(rows[:6])
    row_tokens = max(len(row["input_ids"]) for row in rows[:6])
    assert len(split_packed(batch, row_tokens)) > 1
    count = (batch["labels"][:, 1:] != IGNORE).sum()
    results = []
    for tokens in (0, row_tokens):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        args = TrainingArguments(str(tmp_path), report_to="none", use_cpu=True)
        trainer = TunelabTrainer(model=model, args=args, packed=True, row_tokens=tokens)
        with packed_attention(model):
            loss = trainer.training_step(model, dict(batch), count)
        results.append((loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (whole, whole_grads), (pieces, piece_grads) = results
    assert pieces == pytest.approx(whole, rel=1e-5)
    assert len(whole_grads) == len(piece_grads) > 0
    for a, b in zip(whole_grads, piece_grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_method_with_virtual_tokens_turns_packing_off(tiny_model_dir, chat_file, write_config, monkeypatch):
    """The spec's flag decides, not a special case in the stage."""
    from dataclasses import replace

    from tunelab.methods import METHODS
    from tunelab.methods.lora import LoraMethod
    from tunelab.specs.base import adopt
    from tunelab.specs.methods import METHOD_SPECS
    from tunelab.train import prepare

    lora = METHOD_SPECS["lora"]
    spec = replace(lora, name="virtual", caps=replace(lora.caps, supports_packing=False))
    monkeypatch.setitem(METHOD_SPECS, "virtual", spec)
    monkeypatch.setitem(METHODS, "virtual", adopt(type("VirtualTokens", (LoraMethod,), {}), spec))
    config = load_config(write_config(tiny_model_dir, chat_file, "virtual", method={"name": "virtual"}))
    prepared = prepare(config, config.output.dir)
    assert config.train.packing and not prepared.packing and not prepared.trainer.packed
    batch = prepared.trainer.data_collator(prepared.trainer.train_dataset[:3])
    assert "attention_mask" in batch and batch["input_ids"].shape[0] == 3  # padded rows, one per example


def test_bf16_runs_the_fused_path_under_autocast(tiny_model_dir, chat_file, write_config):
    """The decoder is called directly, so autocast must be entered there: bf16 changes the loss a little."""
    common = {"max_steps": 1, "batch_size": 12, "logging_steps": 1}
    fp32 = train(load_config(write_config(tiny_model_dir, chat_file, "fp32", train={**common, "precision": "fp32"})))
    bf16 = train(load_config(write_config(tiny_model_dir, chat_file, "bf16", train={**common, "precision": "bf16"})))
    a, b = _first_loss(fp32.run_dir)["loss"], _first_loss(bf16.run_dir)["loss"]
    assert a != b and b == pytest.approx(a, rel=0.05)


@pytest.mark.parametrize("family", ["mistral", "qwen2"])
def test_a_windowed_model_loses_the_same_packed_or_padded(family, tiny_tokenizer, chat_file, write_config, tmp_path):
    """One step over the same whole batch, packed and padded: the same loss. With a 4-token window smaller
    than the examples, dropping the window in packed rows changed it by ~0.2%."""
    from transformers import AutoModelForCausalLM, MistralConfig, Qwen2Config

    from tunelab.config import load_config
    from tunelab.train import train

    config_class, extra = {"mistral": (MistralConfig, {}),
                           "qwen2": (Qwen2Config, {"use_sliding_window": True, "max_window_layers": 0})}[family]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config_class(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, sliding_window=4, tie_word_embeddings=True,
        bos_token_id=tiny_tokenizer.bos_token_id, eos_token_id=tiny_tokenizer.eos_token_id, **extra))
    folder = tmp_path / family
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    losses = {}
    for packing in (True, False):
        run = train(load_config(write_config(folder, chat_file, f"{family}-{packing}", train={
            "max_steps": 1, "batch_size": 12, "packing": packing, "lr": 1e-6})))
        losses[packing] = _first_loss(run.run_dir)["loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_a_checkpoints_trainable_state_is_written_before_it_is_marked_complete(tiny_model_dir, chat_file,
                                                                               write_config):
    """PiSSA's saved adapter cannot restart training; resume reads the raw tensors instead, so a checkpoint
    marked complete must already hold them: the writer's on_save runs before the marker's."""
    from tunelab.train import prepare
    from tunelab.training.guards import CompleteCheckpoints
    from tunelab.training.hooks import SaveTrainable

    config = load_config(write_config(tiny_model_dir, chat_file, "pissa", method={"name": "pissa"}))
    marker = CompleteCheckpoints(config.output.dir, 2)  # as train() passes it, with the other guards
    kinds = [type(c) for c in prepare(config, config.output.dir, [marker]).trainer.callback_handler.callbacks]
    assert kinds.index(SaveTrainable) < kinds.index(CompleteCheckpoints)
