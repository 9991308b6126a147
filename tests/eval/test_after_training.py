"""The `eval:` section after training, with a scripted subject in place of a model: the forgetting probes go
through the real evaluation, and summary.json, eval.json and the log name the questions that moved."""
import json
import logging
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch

from tunelab.config import RunConfig
from tunelab.eval.after_training import evaluate_run
from tunelab.eval.probes import load_probe_set


class ScriptedSubject:
    """Answers each probe question from a script (anything else: "no idea"); as_base() answers from another."""

    def __init__(self, tokenizer, answers: dict[str, str], base_answers: dict[str, str]):
        self.tokenizer, self.answers, self.base_answers = tokenizer, answers, base_answers
        self.loaded = SimpleNamespace(dtype=torch.float32, run=None, base=SimpleNamespace(name="scripted"))

    def generate(self, prompts, settings) -> list[str]:
        return [self.answers.get(prompt[-1]["content"], "no idea") for prompt in prompts]

    def nll(self, batch) -> list[tuple[float, int]]:
        return [(1.0, 1)] * len(batch["input_ids"])

    def answer_gap(self, messages, answer, accepted) -> float:
        assert answer == self.answers[messages[-1]["content"]]  # asked only of answers the base got right
        return 0.25

    @contextmanager
    def as_base(self):
        yield ScriptedSubject(self.tokenizer, self.base_answers, self.base_answers)


@pytest.fixture()
def probes_run(tiny_tokenizer, tmp_path):
    """The probes answered by a subject that keeps the first, loses the second and gains the third."""
    first, second, third = load_probe_set("probes")[:3]
    tuned = {first["instruction"]: first["expect"][0], third["instruction"]: third["expect"][0]}
    base = {first["instruction"]: first["expect"][0], second["instruction"]: second["expect"][0]}
    config = RunConfig(data={"path": "unused.jsonl"}, eval={"forgetting": True, "max_new_tokens": 4})
    subject = ScriptedSubject(tiny_tokenizer, tuned, base)
    stage = SimpleNamespace(eval_kind="generation")
    return evaluate_run(config, tmp_path, subject, stage), tmp_path, (first, second, third)


def test_summary_and_eval_json_list_the_questions_kept_lost_and_gained(probes_run):
    found, run_path, (first, second, third) = probes_run
    changes = found["forgetting"]["changes"]
    assert (changes["kept"], changes["lost"], changes["gained"]) == (
        [first["instruction"]], [second["instruction"]], [third["instruction"]])
    questions = [json.loads(line)["input"]
                 for line in (run_path / "eval" / "forgetting" / "predictions.jsonl").read_text().splitlines()]
    assert changes["never"] == questions[3:] and len(questions) == len(load_probe_set("probes"))
    assert found["forgetting"]["delta"]["contains"] == 0  # one lost, one gained
    assert json.loads((run_path / "eval" / "forgetting" / "eval.json").read_text())["changes"] == changes
    # how firmly the base answered each question it got right, from the base (ScriptedSubject.answer_gap)
    assert found["forgetting"]["base_gaps"] == {first["instruction"]: 0.25, second["instruction"]: 0.25}


def test_the_log_says_what_was_kept_and_lost(tiny_tokenizer, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tunelab")
    first, second = load_probe_set("probes")[:2]
    subject = ScriptedSubject(tiny_tokenizer, {}, {first["instruction"]: first["expect"][0],
                                                   second["instruction"]: second["expect"][0]})
    config = RunConfig(data={"path": "unused.jsonl"}, eval={"forgetting": True, "max_new_tokens": 4})
    evaluate_run(config, tmp_path, subject, SimpleNamespace(eval_kind="generation"))
    assert (f"forgetting: kept 0 of 2 probes the base knew; lost: {first['instruction']} (base by 0.250); "
            f"{second['instruction']} (base by 0.250)") in caplog.text
