"""The template lint, case by case: a broken input is found (and stops `train --strict`), a good one is silent."""
import json
import logging

import pytest
import yaml
from family_models import STANDS, TEMPLATES, build_model_dir, build_tokenizer

from tunelab.data.lint import lint_template
from tunelab.data.templates import TEMPLATES as TABLE

ONE_TURN = [{"role": "user", "content": "What is your name?"}, {"role": "assistant", "content": "My name is Quill."}]
NO_STOP = ("{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\n\n' }}{% endfor %}"
           "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")


def codes(findings) -> list[str]:
    return sorted({finding.code for finding in findings})


def tokenizer_of(stand: str, template: str):
    return build_tokenizer(STANDS[stand], template)


def test_a_good_template_is_silent():
    assert lint_template(tokenizer_of("chatml", TABLE["chatml"]), [("data.jsonl:1", ONE_TURN)]) == []
    assert lint_template(tokenizer_of("llama3", (TEMPLATES / "llama3.jinja").read_text())) == []


def test_a_an_end_of_turn_token_the_tokenizer_splits():
    findings = lint_template(tokenizer_of("mistral", TABLE["chatml"]))  # <|im_end|> is not in its vocabulary
    assert "a" in codes(findings)
    assert any("'<|im_end|>'" in finding.message and "special token" in finding.message for finding in findings)


def test_b_answers_that_end_with_nothing_generation_stops_on():
    findings = lint_template(tokenizer_of("chatml", NO_STOP))
    assert codes(findings) == ["b"] and "will not learn to stop" in findings[0].message


def test_c_an_answer_written_nowhere_after_the_generation_prompt():
    elsewhere = TABLE["chatml"].replace("'<|im_start|>assistant\n'", "'<|im_start|>bot\n'")
    assert elsewhere != TABLE["chatml"]
    findings = [f for f in lint_template(tokenizer_of("chatml", elsewhere)) if f.code == "c"]
    assert findings and "assistant turn 3" in findings[0].message


def test_templates_that_rewrite_earlier_turns_are_trained_turn_by_turn_not_refused():
    for stand in ("qwen3", "deepseek-r1"):
        template = (TEMPLATES / f"{stand}.jinja").read_text()
        assert "c" not in codes(lint_template(tokenizer_of(stand, template), [("data.jsonl:1", ONE_TURN)])), stand


def test_d_an_empty_think_block_that_would_be_trained():
    r1 = tokenizer_of("deepseek-r1", (TEMPLATES / "deepseek-r1.jinja").read_text())
    assert "d" in codes(lint_template(r1, [("data.jsonl:1", ONE_TURN)]))  # its prompt opens <think>: no switch
    qwen3 = tokenizer_of("qwen3", (TEMPLATES / "qwen3.jinja").read_text())
    assert "d" not in codes(lint_template(qwen3, [("data.jsonl:1", ONE_TURN)]))  # left untrained there
    # a think block that does not open the answer is not found as reasoning, so it would be trained
    inside = TABLE["chatml"].replace("message['content'] + '<|im_end|>", "'Answer: <think></think>' + "
                                     "message['content'] + '<|im_end|>")
    assert inside != TABLE["chatml"]
    assert "d" in codes(lint_template(tokenizer_of("chatml", inside), [("data.jsonl:1", ONE_TURN)]))
    assert "d" not in codes(lint_template(tokenizer_of("chatml", TABLE["chatml"]), [("data.jsonl:1", ONE_TURN)]))


def test_e_a_template_other_than_the_continued_runs():
    tokenizer = tokenizer_of("chatml", TABLE["chatml"])
    assert codes(lint_template(tokenizer, saved_template=TABLE["smollm2"])) == ["e"]
    assert lint_template(tokenizer, saved_template=TABLE["chatml"]) == []


# ---- at the start of training: warnings, or errors under --strict ---------------------------------


@pytest.fixture(scope="module")
def no_stop_dir(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = build_model_dir(STANDS["chatml"], tmp_path_factory.mktemp("no_stop"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = NO_STOP
    tokenizer.save_pretrained(folder)
    return folder


def write(folder, model_dir, **data):
    folder.mkdir(parents=True, exist_ok=True)
    records = folder / "data.jsonl"
    records.write_text(json.dumps({"messages": ONE_TURN}) + "\n", encoding="utf-8")
    config = {"model": {"path": str(model_dir)}, "data": {"path": str(records), **data},
              "method": {"name": "lora", "r": 2, "alpha": 4},
              "train": {"max_steps": 1, "batch_size": 1, "precision": "fp32", "report_to": "none"},
              "output": {"dir": str(folder / "run")}}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture()
def warnings_logged():
    handler = Warnings()
    logging.getLogger("tunelab").addHandler(handler)
    yield handler.lines
    logging.getLogger("tunelab").removeHandler(handler)


def test_train_warns_and_strict_stops_with_the_message(no_stop_dir, tmp_path, capsys, warnings_logged):
    from tunelab.cli.main import main

    assert main(["train", str(write(tmp_path / "warn", no_stop_dir))]) == 0
    assert any("template lint (b)" in line for line in warnings_logged)
    code = main(["train", str(write(tmp_path / "strict", no_stop_dir)), "--strict"])
    err = capsys.readouterr().err
    assert code != 0 and "--strict" in err and "template lint (b)" in err and "Traceback" not in err
    assert not list((tmp_path / "strict" / "run").glob("*.safetensors"))


def test_continuing_a_run_with_another_template_warns_e(tiny_model_dir, tmp_path, warnings_logged):
    from tunelab.cli.main import main

    first = write(tmp_path / "first", tiny_model_dir)
    assert main(["train", str(first)]) == 0
    assert not any("template lint" in line for line in warnings_logged)
    again = write(tmp_path / "again", tmp_path / "first" / "run", template="smollm2")  # its tokens are there
    assert main(["train", str(again)]) == 0
    assert any("template lint (e)" in line for line in warnings_logged)
