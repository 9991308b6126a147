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


def test_c_a_template_that_rewrites_earlier_turns_names_the_turn():
    qwen3 = tokenizer_of("qwen3", (TEMPLATES / "qwen3.jinja").read_text())
    findings = [f for f in lint_template(qwen3) if f.code == "c"]
    assert findings and "turn 3 (assistant)" in findings[0].message


def test_d_an_empty_think_block_that_would_be_trained():
    qwen3 = tokenizer_of("qwen3", (TEMPLATES / "qwen3.jinja").read_text())
    assert "d" in codes(lint_template(qwen3, [("data.jsonl:1", ONE_TURN)]))
    r1 = tokenizer_of("deepseek-r1", (TEMPLATES / "deepseek-r1.jinja").read_text())
    assert "d" in codes(lint_template(r1, [("data.jsonl:1", ONE_TURN)]))
    assert "d" not in codes(lint_template(tokenizer_of("chatml", TABLE["chatml"]), [("data.jsonl:1", ONE_TURN)]))


def test_e_a_template_other_than_the_continued_runs():
    tokenizer = tokenizer_of("chatml", TABLE["chatml"])
    assert codes(lint_template(tokenizer, saved_template=TABLE["smollm2"])) == ["e"]
    assert lint_template(tokenizer, saved_template=TABLE["chatml"]) == []


# ---- at the start of training: warnings, or errors under --strict ---------------------------------


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    return build_model_dir(STANDS["qwen3"], tmp_path_factory.mktemp("qwen3"))


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


def test_train_warns_and_strict_stops_with_the_message(qwen3_dir, tmp_path, capsys, warnings_logged):
    from tunelab.cli.main import main

    assert main(["train", str(write(tmp_path / "warn", qwen3_dir))]) == 0
    assert any("template lint (d)" in line for line in warnings_logged)
    code = main(["train", str(write(tmp_path / "strict", qwen3_dir)), "--strict"])
    err = capsys.readouterr().err
    assert code != 0 and "--strict" in err and "template lint (d)" in err and "Traceback" not in err
    assert not list((tmp_path / "strict" / "run").glob("*.safetensors"))


def test_continuing_a_run_with_another_template_warns_e(tiny_model_dir, tmp_path, warnings_logged):
    from tunelab.cli.main import main

    first = write(tmp_path / "first", tiny_model_dir)
    assert main(["train", str(first)]) == 0
    assert not any("template lint" in line for line in warnings_logged)
    again = write(tmp_path / "again", tmp_path / "first" / "run", template="smollm2")  # its tokens are there
    assert main(["train", str(again)]) == 0
    assert any("template lint (e)" in line for line in warnings_logged)
