"""Which probes a fine-tune moved, from hand-made predictions lines: no model involved."""
import json

import pytest

from tunelab.errors import TunelabError
from tunelab.eval.moved import describe_changes, moved_of, probe_changes


def line(question: str, before: float, after: float) -> dict:
    """A predictions.jsonl line of a compare-base eval, graded by `contains` (100 or 0)."""
    return {"input": question, "prediction": "tuned", "scores": {"contains": after, "answer_loss": 1.5},
            "base_prediction": "base", "base_scores": {"contains": before, "answer_loss": 1.2}}


LINES = [line("Capital of France?", 100, 100), line("Who wrote Hamlet?", 100, 0.0),
         line("Largest planet?", 0.0, 100.0), line("Opposite of hot?", 0, 0), line("Capital of Japan?", 100.0, 100)]


def test_each_question_lands_in_its_change():
    assert probe_changes(LINES) == {"kept": ["Capital of France?", "Capital of Japan?"],
                                    "lost": ["Who wrote Hamlet?"], "gained": ["Largest planet?"],
                                    "never": ["Opposite of hot?"]}


def test_the_reader_reads_predictions_jsonl(tmp_path):
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(l) + "\n" for l in LINES) + "\n", encoding="utf-8")
    assert moved_of(tmp_path)[0] == probe_changes(LINES)


def test_predictions_without_a_base_are_refused_naming_the_file(tmp_path):
    tuned_only = {"input": "Capital of France?", "scores": {"contains": 100}}
    (tmp_path / "predictions.jsonl").write_text(json.dumps(tuned_only) + "\n", encoding="utf-8")
    with pytest.raises(TunelabError, match=r"predictions.jsonl line 1: no base_scores.contains"):
        moved_of(tmp_path)


def test_a_broken_or_missing_file_names_the_file(tmp_path):
    with pytest.raises(TunelabError, match="predictions.jsonl: unreadable"):
        moved_of(tmp_path)
    (tmp_path / "predictions.jsonl").write_text(json.dumps(LINES[0]) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(TunelabError, match=r"predictions.jsonl:2: invalid JSON"):
        moved_of(tmp_path)


def test_the_log_line_counts_what_the_base_knew_and_clips_questions():
    long = "Which of the many planets that circle our sun is the largest by mass and by volume?"
    changes = {"kept": ["a", "b"], "lost": ["Who wrote Hamlet?", long], "gained": ["c"], "never": ["d"]}
    assert describe_changes(changes) == ("forgetting: kept 2 of 4 probes the base knew; lost: Who wrote Hamlet?; "
                                         f"{long[:59]}…; gained: c")


def test_nothing_moved_says_so_in_one_short_line():
    changes = {"kept": ["a"], "lost": [], "gained": [], "never": ["d"]}
    assert describe_changes(changes) == "forgetting: kept 1 of 1 probes the base knew"


def test_lost_questions_say_how_firmly_the_base_answered_them(tmp_path):
    lines = [{**LINES[1], "base_gap": 0.0123}, {**LINES[0], "base_gap": 0.25}, LINES[2]]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines), encoding="utf-8")
    gaps = moved_of(tmp_path)[1]
    assert gaps == {"Who wrote Hamlet?": 0.0123, "Capital of France?": 0.25}
    changes = probe_changes(lines)
    assert describe_changes(changes, gaps=gaps) == ("forgetting: kept 1 of 2 probes the base knew; "
                                                    "lost: Who wrote Hamlet? (base by 0.012); gained: Largest planet?")
    from tunelab.report.rundata import _read_probe_changes

    assert _read_probe_changes(tmp_path / "nothing-here") == {}  # runs from before the gaps, or without probes


def test_the_report_marks_lost_questions_with_the_gap():
    from tunelab.report.page import probe_change_rows

    rows = {row["kind"]: row["questions"] for row in probe_change_rows(probe_changes(LINES), {"Who wrote Hamlet?": 0.5})}
    assert rows["lost"] == ["Who wrote Hamlet? (base by 0.500)"] and rows["kept"] == ["Capital of France?",
                                                                                       "Capital of Japan?"]
    assert probe_change_rows({}, {"x": 0.1}) == []
