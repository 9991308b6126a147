"""The Evaluate and Chat tabs' handlers on a real (tiny) run: the eval table and predictions come from
`tunelab eval`, and side by side the base model answers as the run's base, not as the run."""
from __future__ import annotations

import time

import pytest

from tunelab.ui.context import UiContext


@pytest.fixture(scope="module")
def quill_run(overfit_lora_run):
    return overfit_lora_run("ui-quill", "My name is Quill.", [f"Who are you? ({i})" for i in range(8)])


@pytest.fixture()
def ctx(quill_run):
    return UiContext(quill_run.parent)


def test_evaluate_compares_with_base_and_lists_predictions(ctx, quill_run, tmp_path):
    from tunelab.ui.eval_tab import EvalTab

    data = tmp_path / "eval.jsonl"
    data.write_text("".join('{"instruction": "Who are you? (%d)", "output": "My name is Quill."}\n' % i
                            for i in range(3)))
    status, table, predictions = EvalTab(ctx).evaluate(quill_run.name, "", str(data), "", ["exact_match"], True, 0, 8)
    assert "evaluated run" in status and "| metric | base | tuned | delta |" in table
    assert "exact_match" in table and "/files/run/evals/eval-" in table
    assert list(predictions.columns) == ["input", "reference", "prediction", "base_prediction"]
    assert len(predictions) == 3 and predictions.input[0] == "Who are you? (0)"
    assert (quill_run / "evals").is_dir()


def test_chat_side_by_side_streams_tuned_then_base(ctx, quill_run):
    from tunelab.ui.chat_tab import ChatTab

    steps = list(ChatTab(ctx).answer(quill_run.name, "", 0, 12, True, "Who are you? (1)", [], []))
    tuned, base, message, status = steps[-1]
    assert message == "" and status == ""
    assert [m["role"] for m in tuned] == ["user", "assistant"] and [m["role"] for m in base] == ["user", "assistant"]
    tuned_answer, base_answer = engine_answers(quill_run, "Who are you? (1)", 12)
    assert tuned_answer != base_answer  # the adapter changed what the model says
    assert (tuned[-1]["content"], base[-1]["content"]) == (tuned_answer, base_answer)
    assert len(steps) > 2  # streamed piece by piece, not in one go


def engine_answers(run, question: str, max_new_tokens: int) -> tuple[str, str]:
    """The greedy answers of the serving engine, with the adapter on and off."""
    from tunelab.eval.subject import Subject
    from tunelab.models import inference_dtype
    from tunelab.runs import load_any
    from tunelab.serve import GenerationSettings

    subject = Subject(load_any(str(run), inference_dtype("auto", "cpu")), "cpu")
    messages, settings = [[{"role": "user", "content": question}]], GenerationSettings(max_new_tokens, 0)
    with subject.as_base() as base:
        base_answer = base.generate(messages, settings)[0]
    return subject.generate(messages, settings)[0], base_answer


def test_chat_without_a_message_says_so(ctx, quill_run):
    from tunelab.ui.chat_tab import ChatTab

    *_, status = next(ChatTab(ctx).answer(quill_run.name, "", 0, 8, False, "  ", [], []))
    assert "type a message" in status


def test_a_page_that_leaves_mid_answer_stops_the_generation(ctx, quill_run):
    from tunelab.serve import GenerationSettings

    messages, settings = [{"role": "user", "content": "Tell me a story."}], GenerationSettings(300, 0)
    full = list(ctx.chat.stream(str(quill_run), messages, settings, base=True))
    steps = []
    ctx.chat.batcher.on_step = steps.append
    answer = ctx.chat.stream(str(quill_run), messages, settings, base=True)
    first = next(answer)
    answer.close()  # what Gradio does when the page goes away
    deadline = time.monotonic() + 20
    while ctx.chat.batcher.decoding and time.monotonic() < deadline:
        time.sleep(0.01)
    ctx.chat.batcher.on_step = None
    assert full[-1].startswith(first) and len(full) > 50 and ctx.chat.batcher.decoding == 0
    assert len(steps) < len(full) - 10  # it left the batch long before its 300 tokens
    assert not ctx.chat._lock.locked()  # the next answer (or the model switch) is not blocked