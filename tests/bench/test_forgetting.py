"""The forgetting benchmark stays runnable: its config validates with every method it runs, and its table
reports kept questions per set, throughput against the unguarded run and the questions that moved. Nothing here
trains (the benchmark itself is run by hand, see bench/README.md)."""
import pytest

from tunelab.config.loader import load_config

BENCH_NAME = "forgetting"  # loaded by the bench fixture (conftest.py)


@pytest.mark.parametrize("method", ["none", "kl", "ewc", "replay"])
def test_the_config_runs_every_method(bench, method):
    config = load_config(bench.CONFIG, [f"continual.method={method}"])
    assert config.method.name == "lora" and config.eval.compare_base
    assert [name for name, _ in config.continual.entries()] == ([] if method == "none" else [method])


def test_changes_count_kept_of_what_the_base_knew(bench):
    moved = {"kept": ["a", "b"], "lost": ["c"], "gained": ["d"], "never": ["e"]}
    assert bench.changes(moved) == {"kept": "2/3", "lost": ["c"], "gained": ["d"]}
    assert bench.changes(moved, {"c": 0.0123, "a": 0.5})["lost"] == ["c (base by 0.012)"]


def test_table_compares_throughput_with_the_unguarded_run_and_lists_what_moved(bench):
    row = {"identity": "10/10", "probe_ppl_before": 3.0, "probe_ppl_after": 3.5, "train_loss": 0.5, "train_s": 100,
           "wall_s": 120}
    rows = [{**row, "method": "none", "tokens_per_s": 300.0, "probes": {"kept": "8/9", "lost": ["Hot?"], "gained": []},
             "heldout": {"kept": "16/16", "lost": [], "gained": []}},
            {**row, "method": "kl", "tokens_per_s": 240.0, "probes": {"kept": "9/9", "lost": [], "gained": []},
             "heldout": {"kept": "16/16", "lost": [], "gained": ["Spoon?"]}}]
    text = bench.table(rows)
    assert "| kl | 10/10 | 9/9 | 16/16 |" in text and "| 240 | 0.80 |" in text and "| 300 | 1.00 |" in text
    assert "- none, probes lost: Hot?" in text and "- kl, general_heldout gained: Spoon?" in text


def _run(method, seed, speed, probes, heldout, identity="10/10"):
    return {"method": method, "seed": seed, "identity": identity, "probe_ppl_before": 3.0, "probe_ppl_after": 3.0,
            "train_loss": 0.5, "train_s": 100, "wall_s": 120, "tokens_per_s": speed,
            "probes": {"kept": probes, "lost": [], "gained": []},
            "heldout": {"kept": heldout, "lost": [], "gained": []}}


def test_with_seeds_each_run_is_compared_with_the_unguarded_run_of_its_own_seed_and_totals_add_up(bench):
    rows = [_run("none", 1, 300.0, "8/9", "12/16"), _run("kl", 1, 240.0, "9/9", "15/16"),
            _run("none", 2, 400.0, "7/9", "11/16"), _run("kl", 2, 200.0, "9/10", "16/16", identity="9/10")]
    text = bench.table(rows)
    assert "| kl (seed 1) | 10/10 | 9/9 | 15/16 |" in text and "| 240 | 0.80 |" in text
    assert "| kl (seed 2) | 9/10 |" in text and "| 200 | 0.50 |" in text
    totals = bench.totals(rows)
    assert "| none | 2 | 20/20 | 3 of 18 | 9 of 32 | 12 of 50 | 1.00 |" in totals
    assert "| kl | 2 | 19/20 | 1 of 19 | 1 of 32 | 2 of 51 | 0.65 |" in totals


def test_another_task_and_question_set_are_named_after_themselves(bench):
    assert bench.set_name("builtin:general_heldout") == "general_heldout"
    assert bench.set_name("/data/my_general.jsonl") == "my_general"
    rows = [_run("none", 1, 300.0, "8/9", "5/6", identity="-"), _run("kl", 1, 240.0, "9/9", "6/6", identity="-")]
    rows[0]["heldout"]["lost"] = ["Moon?"]
    text = bench.table(rows, heldout="my_general", task="task: held-out eval answered")
    assert "| continual.method | task: held-out eval answered |" in text and "kept: my_general |" in text
    assert "| kl (seed 1) | - | 9/9 | 6/6 |" in text and "- none (seed 1), my_general lost: Moon?" in text
    totals = bench.totals(rows, heldout="my_general")
    assert "lost: my_general |" in totals and "| kl | 1 | - | 0 of 9 | 0 of 6 | 0 of 15 | 0.80 |" in totals


def test_the_task_column_counts_the_runs_own_contains_scores(bench, tmp_path):
    import json

    assert bench.task_score(tmp_path / "missing.jsonl") == "-"
    path = tmp_path / "predictions.jsonl"
    lines = [{"scores": {"contains": 100}}, {"scores": {"contains": 0}}, {"scores": {"bleu": 3.0}}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert bench.task_score(path) == "1/2"
