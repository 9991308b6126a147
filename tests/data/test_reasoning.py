"""Reasoning data through the published Qwen3 and DeepSeek-R1 templates: both conventions give the same tokens,
reasoning is trained or not as asked, an empty think block never is, multi-turn data trains each answer as
generation sees it, and the template's enable_thinking switch is saved with the run."""
import json

import pytest
import yaml
from family_models import STANDS, TEMPLATES, build_model_dir, build_tokenizer

from tunelab.data import load_examples
from tunelab.data.reasoning import Thinking, thinking_default, with_thinking_default
from tunelab.data.templates import render_conversation
from tunelab.data.tokenize import IGNORE, TokenizeStats, conversation_rows
from tunelab.errors import TunelabError

REASONING = ["The user asks my name. It is Quill.", "Who made me: Lumen Labs."]
ANSWERS = ["My name is Quill.", "Lumen Labs made me."]
ASKED = ["What is your name?", "Who made you?"]


def tokenizer(stand: str):
    return build_tokenizer(STANDS[stand], (TEMPLATES / f"{STANDS[stand].template}.jinja").read_text())


def with_field(turns: int = 2, reasoning: bool = True) -> list[dict]:
    messages = []
    for asked, thought, answer in list(zip(ASKED, REASONING, ANSWERS))[:turns]:
        messages += [{"role": "user", "content": asked},
                     {"role": "assistant", "content": answer, **({"reasoning_content": thought} if reasoning else {})}]
    return messages


def with_think_block(turns: int = 2) -> list[dict]:
    messages = []
    for asked, thought, answer in list(zip(ASKED, REASONING, ANSWERS))[:turns]:
        messages += [{"role": "user", "content": asked},
                     {"role": "assistant", "content": f"<think>\n{thought}\n</think>\n\n{answer}"}]
    return messages


def rows(tok, messages, thinking=Thinking()):
    return conversation_rows(tok, {"messages": messages, "source": "t"}, 1024, TokenizeStats(), thinking)


def trained_text(tok, row) -> str:
    return tok.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != IGNORE])


def load(tmp_path, messages_list, name="data.jsonl") -> list[dict]:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in messages_list), encoding="utf-8")
    return load_examples(str(path))


@pytest.mark.parametrize("stand", ["qwen3", "deepseek-r1"])
def test_both_conventions_give_identical_ids_and_labels(stand, tmp_path):
    tok = tokenizer(stand)
    field, block = load(tmp_path, [with_field()], "a.jsonl")[0], load(tmp_path, [with_think_block()], "b.jsonl")[0]
    for thinking in (Thinking(), Thinking(train=False), Thinking(keep=False)):
        assert rows(tok, field["messages"], thinking) == rows(tok, block["messages"], thinking)


@pytest.mark.parametrize("stand", ["qwen3", "deepseek-r1"])
def test_multi_turn_reasoning_trains_each_answer_with_its_reasoning_once(stand):
    tok = tokenizer(stand)
    got = rows(tok, with_field())
    assert len(got) == 2  # both templates drop earlier turns' reasoning: each answer in its own row
    for row, thought, answer in zip(got, REASONING, ANSWERS):
        text = trained_text(tok, row)
        assert thought in text and answer in text and text.index(thought) < text.index(answer)
        assert "</think>" in text and text.count(answer) == 1
    # the second answer is trained after the first as the template renders it in history: without its reasoning
    context = tok.decode(got[1]["input_ids"])
    assert REASONING[0] not in context and ANSWERS[0] in context
    prompt = render_conversation(tok, with_field()[:3], add_generation_prompt=True)
    assert tok.decode(got[1]["input_ids"]).startswith(prompt)


@pytest.mark.parametrize("stand", ["qwen3", "deepseek-r1"])
def test_train_thinking_false_labels_no_reasoning_token_and_true_labels_all(stand):
    tok = tokenizer(stand)
    for row, thought, answer in zip(rows(tok, with_field(), Thinking(train=False)), REASONING, ANSWERS):
        text = trained_text(tok, row)
        assert thought not in text and "think>" not in text and answer in text
        labelled = {i for i, label in enumerate(row["labels"]) if label != IGNORE}
        ids = tok(thought, add_special_tokens=False)["input_ids"]
        at = next(i for i in range(len(row["input_ids"])) if row["input_ids"][i:i + len(ids)] == ids)
        assert not labelled & set(range(at, at + len(ids)))
    for row, thought in zip(rows(tok, with_field(), Thinking(train=True)), REASONING):
        ids = tok(thought, add_special_tokens=False)["input_ids"]
        at = next(i for i in range(len(row["input_ids"])) if row["input_ids"][i:i + len(ids)] == ids)
        assert all(row["labels"][i] == row["input_ids"][i] for i in range(at, at + len(ids)))


def test_an_empty_think_block_is_not_trained():
    tok = tokenizer("qwen3")  # its prompt opens <think> too, but the thinking switch can close it at inference
    got = rows(tok, with_field(reasoning=False))
    texts = [trained_text(tok, row) for row in got]
    assert all("think>" not in text for text in texts) and [a in t for a, t in zip(ANSWERS, texts)] == [True, True]
    assert all("<think>" in tok.decode(row["input_ids"]) for row in got)  # it is there, as context


def test_deepseek_r1_learns_to_close_the_block_its_prompt_opens():
    tok = tokenizer("deepseek-r1")  # no switch: the model itself must close the block (lint (d) warns)
    for row, answer in zip(rows(tok, with_field(reasoning=False)), ANSWERS):
        assert trained_text(tok, row).startswith("\n</think>\n\n" + answer)


def test_dropped_thinking_leaves_no_reasoning_and_the_switch_closes_the_block():
    tok = tokenizer("qwen3")
    tok.chat_template = with_thinking_default(tok.chat_template, False)
    assert thinking_default(tok.chat_template) is False
    got = rows(tok, with_field(), Thinking(keep=False))
    for row, answer in zip(got, ANSWERS):  # the prompt closes an empty block: only the answer is trained
        assert not any(thought in tok.decode(row["input_ids"]) for thought in REASONING)
        assert trained_text(tok, row).startswith(answer)
    # the saved default holds at inference, and an explicit value still wins
    assert render_conversation(tok, with_field(1)[:1], add_generation_prompt=True).endswith("<think>\n\n</think>\n\n")
    assert not tok.apply_chat_template(with_field(1)[:1], tokenize=False, add_generation_prompt=True,
                                       enable_thinking=True).endswith("</think>\n\n")
    assert with_thinking_default(tok.chat_template, True).count("tunelab: enable_thinking") == 1


# ---- through `tunelab train` and `tunelab data inspect` ---------------------------------------------------


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    return build_model_dir(STANDS["qwen3"], tmp_path_factory.mktemp("qwen3"))


def run_config(folder, model_dir, messages_list, **data) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    records = folder / "data.jsonl"
    records.write_text("".join(json.dumps({"messages": m}) + "\n" for m in messages_list), encoding="utf-8")
    config = {"model": {"path": str(model_dir)}, "data": {"path": str(records), **data},
              "method": {"name": "lora", "r": 2, "alpha": 4},
              "train": {"max_steps": 2, "batch_size": 2, "precision": "fp32", "report_to": "none"},
              "output": {"dir": str(folder / "run")}}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def test_qwen3_multi_turn_reasoning_trains_and_saves_the_switch(qwen3_dir, tmp_path, capsys):
    from transformers import AutoTokenizer

    from tunelab.cli.main import main

    config = run_config(tmp_path / "a", qwen3_dir, [with_field(), with_think_block(1)])
    assert main(["train", config]) == 0
    saved = AutoTokenizer.from_pretrained(tmp_path / "a" / "run" / "model")
    assert thinking_default(saved.chat_template) is True
    provenance = json.loads((tmp_path / "a" / "run" / "provenance.json").read_text())
    assert provenance["chat_template"]["enable_thinking"] is True

    assert main(["data", "inspect", config, "--show", "0", "--output", str(tmp_path / "inspect")]) == 0
    out = capsys.readouterr().out
    assert "reasoning: 3 answers carry reasoning: trained" in out and "enable_thinking: true" in out

    plain = run_config(tmp_path / "b", qwen3_dir, [with_field(reasoning=False)])
    assert main(["train", plain]) == 0  # no reasoning in the data: trained and served with thinking off
    assert thinking_default(AutoTokenizer.from_pretrained(tmp_path / "b" / "run" / "model").chat_template) is False


def test_switching_thinking_off_while_keeping_reasoning_is_refused(qwen3_dir, tmp_path, capsys):
    from tunelab.cli.main import main

    config = run_config(tmp_path / "c", qwen3_dir, [with_field()], enable_thinking=False)
    assert main(["train", config]) != 0
    err = capsys.readouterr().err
    assert "data.enable_thinking: false" in err and "data.thinking: drop" in err and "Traceback" not in err
    assert not list((tmp_path / "c" / "run").glob("*.safetensors"))
    with pytest.raises(TunelabError, match="keep one"):
        load(tmp_path, [[{"role": "user", "content": "q"},
                         {"role": "assistant", "content": "<think>a</think>b", "reasoning_content": "c"}]])


def test_generated_reasoning_is_told_apart_from_the_answer():
    from tunelab.data.reasoning import answer_of

    assert answer_of("<think>\nstep\n</think>\n\nParis.") == ("step", "Paris.")
    assert answer_of("step one\n</think>\n\nParis.") == ("step one", "Paris.")  # <think> was in the prompt
    assert answer_of("<think>\nstill thinking") == ("still thinking", "")
    assert answer_of("Paris.") == (None, "Paris.")
