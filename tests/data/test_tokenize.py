"""Label masks by position: only assistant tokens train, the end-of-turn EOS trains although pad == EOS;
data.train_on: last trains only the final answer."""
import pytest
import torch

from tunelab.data.tokenize import IGNORE, TRAIN_ON, TokenizeStats, tokenize_conversation, tokenize_text
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


def test_train_on_last_trains_only_the_final_answer(tiny_tokenizer):
    example = conversation("Hi", "Hello", "Who made you?", "Lumen Labs.", "Where?", "In Oslo.", system="Be brief.")
    every = tokenize_conversation(tiny_tokenizer, TRAIN_ON["all"](example), 256, TokenizeStats())
    last = tokenize_conversation(tiny_tokenizer, TRAIN_ON["last"](example), 256, TokenizeStats())
    assert trained_text(tiny_tokenizer, every) == "Hello<|im_end|>Lumen Labs.<|im_end|>In Oslo.<|im_end|>"
    assert trained_text(tiny_tokenizer, last) == "In Oslo.<|im_end|>"
    assert last["input_ids"] == every["input_ids"]  # the earlier answers stay, as context
    trained = [i for i, label in enumerate(last["labels"]) if label != IGNORE]
    assert trained == list(range(trained[0], trained[0] + len(trained)))  # one run of tokens: the last answer's
    assert tiny_tokenizer.decode(last["input_ids"][trained[0]:]).startswith("In Oslo.")


def test_train_on_last_labels_survive_packing(tiny_tokenizer):
    from tunelab.data.packing import PackedCollator

    stats = TokenizeStats()
    rows = [tokenize_conversation(tiny_tokenizer, TRAIN_ON["last"](conversation(*turns)), 256, stats)
            for turns in (("Hi", "Hello", "Bye", "Goodbye."), ("Name?", "Quill.", "Age?", "Two."))]
    packed = PackedCollator()(rows)
    labels = [label for label in packed["labels"][0].tolist() if label != IGNORE]
    assert tiny_tokenizer.decode(labels) == "Goodbye.<|im_end|>Two.<|im_end|>"


def test_train_on_last_leaves_single_turn_and_text_examples_alone():
    single = conversation("Hi", "Hello")
    assert TRAIN_ON["last"](single) is single
    text = {"text": "plain", "source": "t.txt:1"}
    assert TRAIN_ON["last"](text) is text


def test_a_context_answer_is_not_sent_to_the_template(tiny_tokenizer):
    """`weight` marks an answer as context for tunelab only; templates render the message without it."""
    example = TRAIN_ON["last"](conversation("Hi", "Hello", "Bye", "Goodbye."))
    assert example["messages"][1]["weight"] == 0
    plain = tokenize_conversation(tiny_tokenizer, conversation("Hi", "Hello", "Bye", "Goodbye."), 256, TokenizeStats())
    assert tokenize_conversation(tiny_tokenizer, example, 256, TokenizeStats())["input_ids"] == plain["input_ids"]


def test_train_on_is_part_of_the_cache_key_and_read_by_sft_only(tmp_path):
    import yaml

    from tunelab.config import load_config
    from tunelab.config.keys import cache_key_values
    from tunelab.errors import TunelabError

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": "x.json", "train_on": "last"}}), encoding="utf-8")
    values = cache_key_values(load_config(path))
    assert values["data.train_on"] == "last" and values["train.max_samples"] == 0
    with pytest.raises(TunelabError, match=r"data.train_on: train.stage 'dpo' does not read it \(read by: sft\)"):
        load_config(path, ["train.stage=dpo"])


def _multi_turn_file(path):
    import json

    turns = [[{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": "Hello."},
              {"role": "user", "content": "Bye"}, {"role": "assistant", "content": f"Goodbye {i}."}] for i in range(6)]
    path.write_text("".join(json.dumps({"messages": messages}) + "\n" for messages in turns), encoding="utf-8")
    return path


def test_a_run_with_train_on_last_trains_only_the_last_answers(tiny_model_dir, tiny_tokenizer, write_config, tmp_path):
    from tunelab.config import load_config
    from tunelab.train import prepare

    data = _multi_turn_file(tmp_path / "chat.jsonl")
    config = load_config(write_config(tiny_model_dir, data, "last", data={"train_on": "last"},
                                      train={"max_samples": 4}))
    rows = prepare(config, tmp_path / "out").trainer.train_dataset
    assert sorted(trained_text(tiny_tokenizer, row) for row in rows) == [
        f"Goodbye {i}.<|im_end|>" for i in range(4)]  # and only the first 4 conversations


def test_a_stream_caps_at_max_samples_and_trains_the_last_answer(tiny_model_dir, tiny_tokenizer, write_config,
                                                                 tmp_path):
    from tunelab.config import load_config
    from tunelab.data.streaming import StreamingRows
    from tunelab.stages import get_stage

    data = _multi_turn_file(tmp_path / "chat.jsonl")
    config = load_config(write_config(tiny_model_dir, data, "stream", data={"train_on": "last", "streaming": True},
                                      train={"max_samples": 3}))
    rows = list(StreamingRows(str(data), None, get_stage(config), tiny_tokenizer))
    assert [trained_text(tiny_tokenizer, row) for row in rows] == [f"Goodbye {i}.<|im_end|>" for i in range(3)]
