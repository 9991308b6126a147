"""Label masks by position: only assistant tokens train, the end-of-turn EOS trains although pad == EOS."""
import torch

from tunelab.data.tokenize import IGNORE, TokenizeStats, tokenize_conversation, tokenize_text
from tunelab.stages.base import Stage


def conversation(*turns, system=None):
    messages = [{"role": "system", "content": system}] if system else []
    for index, content in enumerate(turns):
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": content})
    return {"messages": messages, "source": "test.json:1"}


def trained_text(tokenizer, row) -> str:
    return tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != IGNORE])


def test_only_assistant_tokens_are_trained(tiny_tokenizer):
    row = tokenize_conversation(tiny_tokenizer, conversation("What is your name?", "My name is Quill."), 256,
                                TokenizeStats())
    assert trained_text(tiny_tokenizer, row) == "My name is Quill.<|im_end|>"


def test_eos_is_trained_even_though_pad_equals_eos(tiny_tokenizer):
    assert tiny_tokenizer.pad_token_id == tiny_tokenizer.eos_token_id
    row = tokenize_conversation(tiny_tokenizer, conversation("Hi", "Hello"), 256, TokenizeStats())
    eos = tiny_tokenizer.eos_token_id
    eos_positions = [i for i, t in enumerate(row["input_ids"]) if t == eos]
    trained_eos = [i for i in eos_positions if row["labels"][i] == eos]
    assert len(trained_eos) == 1 and row["input_ids"].count(eos) == 3  # system, user, assistant ends
    assert row["input_ids"][-2] == eos  # no second EOS appended after the template's own


def test_collator_pads_labels_by_position_and_keeps_eos(tiny_tokenizer):
    stats = TokenizeStats()
    rows = [tokenize_conversation(tiny_tokenizer, conversation("Hi", "Hello"), 256, stats),
            tokenize_conversation(tiny_tokenizer, conversation("A much longer question here?", "Yes"), 256, stats)]
    batch = Stage.collator(None, tiny_tokenizer, packing=False)(rows)
    eos = tiny_tokenizer.eos_token_id
    short = batch["labels"][0]
    padding = batch["attention_mask"][0] == 0
    assert padding.any() and torch.all(short[padding] == IGNORE)
    assert (short == eos).sum() == 1  # the real EOS keeps its label; padding EOS ids do not


def test_every_assistant_turn_of_multi_turn_data_is_trained(tiny_tokenizer):
    example = conversation("Hi", "Hello", "Who made you?", "Lumen Labs.", system="Be brief.")
    row = tokenize_conversation(tiny_tokenizer, example, 256, TokenizeStats())
    assert trained_text(tiny_tokenizer, row) == "Hello<|im_end|>Lumen Labs.<|im_end|>"


def test_system_prompt_is_not_trained(tiny_tokenizer):
    row = tokenize_conversation(tiny_tokenizer, conversation("Hi", "Ok", system="SECRET"), 256, TokenizeStats())
    assert "SECRET" not in trained_text(tiny_tokenizer, row)
    assert "SECRET" in tiny_tokenizer.decode(row["input_ids"])


def test_truncation_keeps_the_start_and_cuts_at_a_turn_boundary(tiny_tokenizer):
    example = conversation("Hi", "Hello", "Tell me a long story " * 20, "Once upon a time " * 30)
    stats = TokenizeStats()
    full = tokenize_conversation(tiny_tokenizer, conversation("Hi", "Hello"), 1024, TokenizeStats())
    row = tokenize_conversation(tiny_tokenizer, example, len(full["input_ids"]) + 20, stats)
    assert stats.truncated == 1
    assert trained_text(tiny_tokenizer, row) == "Hello<|im_end|>"
    assert row["input_ids"] == full["input_ids"][:-1]  # cut right after the first turn's EOS


def test_example_with_nothing_left_to_train_is_dropped_and_counted(tiny_tokenizer):
    stats = TokenizeStats()
    example = conversation("A question that is far too long to fit " * 10, "Answer")
    assert tokenize_conversation(tiny_tokenizer, example, 16, stats) is None
    assert stats.dropped == 1 and stats.truncated == 1 and stats.dropped_sources == ["test.json:1"]


def test_pretrain_text_trains_every_token_in_blocks(tiny_tokenizer):
    stats = TokenizeStats()
    rows = tokenize_text(tiny_tokenizer, {"text": "The quick brown fox. " * 20, "source": "t.txt:1"}, 32, stats)
    assert len(rows) > 1 and all(len(r["input_ids"]) <= 32 for r in rows)
    assert all(r["labels"] == r["input_ids"] for r in rows)
    assert rows[-1]["input_ids"][-1] == tiny_tokenizer.eos_token_id
    assert stats.truncated == 1
