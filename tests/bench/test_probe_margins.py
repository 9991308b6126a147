"""The probe-margin benchmark reports the base's greedy answer and how firmly it was given (tunelab.eval.firmness)
on the tiny random model; the real numbers are in docs/training.md."""
import json

from tunelab.eval.firmness import answer_gap
from tunelab.runs import load_any
from tunelab.serve import ChatEngine, GenerationSettings

BENCH_NAME = "probe_margins"  # loaded by the bench fixture (conftest.py)


def test_a_row_holds_the_greedy_answer_and_its_gap_up_to_the_keyword(bench, tiny_model_dir):
    engine = ChatEngine(load_any(str(tiny_model_dir)))
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    answer = engine.generate([messages], GenerationSettings(max_new_tokens=6))[0]
    keyword = answer.split()[0]
    row = bench.firmness(engine, {"messages": messages, "reference": "", "accepted": [keyword]}, 6)
    assert row["answer"] == answer and row["answered"] and keyword.lower() in row["up_to"].lower()
    assert row["gap_p"] == answer_gap(engine, messages, answer, [keyword])
    missed = bench.firmness(engine, {"messages": messages, "reference": "", "accepted": ["zzqq-never"]}, 6)
    assert not missed["answered"] and missed["up_to"].split() == answer.split()  # no keyword: the whole answer


def test_main_prints_a_table_and_writes_the_rows(bench, tiny_model_dir, tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"instruction": "Hello?", "output": "zzqq", "expect": ["zzqq"]}) + "\n",
                         encoding="utf-8")
    assert bench.main(["--model", str(tiny_model_dir), "--sets", str(questions), "--max-new-tokens", "4",
                       "--results", str(tmp_path / "rows.json")]) == 0
    assert "| set | base answers |" in capsys.readouterr().out
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) == 1 and rows[0]["answered"] is False


def test_question_files_resolve_builtin_names(bench):
    rows = bench.questions("builtin:probes")
    assert rows and all(row["accepted"] and row["messages"][-1]["role"] == "user" for row in rows)
