"""Run reports from hand-made run directories: nothing is trained, so these stay fast."""
import argparse
import json

import pytest
import yaml
from PIL import Image

from tunelab.cli import compare as compare_command
from tunelab.cli import report as report_command
from tunelab.errors import TunelabError
from tunelab.report import compare_runs, write_report
from tunelab.report.page import format_number

SCRIPT = "<script>alert('x')</script>"


def make_run(path, method="lora", stage="sft", lr=1e-3, extra_summary=None, extra_lines=()):
    """A finished run dir as `tunelab train` leaves it: 10 training log lines and 2 eval lines."""
    path.mkdir(parents=True)
    config = {
        "model": {"path": "tiny-llama"},
        "data": {"path": "builtin:identity"},
        "method": {"name": method, "r": 16, "alpha": 16.0},
        "train": {"stage": stage, "epochs": 3.0, "max_steps": 0, "lr": lr, "batch_size": 4, "grad_accum": 2,
                  "max_length": 256},
        "output": {"dir": str(path)},
    }
    (path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    summary = {"global_step": 20, "train_loss": 0.61234, "train_runtime_s": 12.5, "train_tokens": 12345,
               "train_tokens_per_s": 987.6, "trainable_params": 1000, "total_params": 100000,
               "examples": {"kept": 40, "truncated": 2, "dropped": 1}, "eval_loss": 0.7, **(extra_summary or {})}
    (path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (path / "provenance.json").write_text(json.dumps({"base_model": "tiny-llama", "started_at": "now"}),
                                          encoding="utf-8")
    (path / "status").write_text("finished\n", encoding="utf-8")
    lines = [{"step": 2 * i, "epoch": i / 5, "loss": 2.0 / i, "lr": lr * (1 - i / 10), "grad_norm": 1.0,
              "tokens": 600 * i, "elapsed_s": float(i)} for i in range(1, 11)]
    lines += [{"step": 10, "epoch": 1.0, "eval_loss": 0.9}, {"step": 20, "epoch": 2.0, "eval_loss": 0.7}]
    lines += list(extra_lines)
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def assert_png(path):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG"


@pytest.fixture()
def run_dir(tmp_path):
    run = make_run(tmp_path / "my-run")
    samples = [{"prompt": "Who are you?", "reference": "Quill", "base": "I am an AI.", "tuned": SCRIPT}]
    (run / "samples.json").write_text(json.dumps(samples), encoding="utf-8")
    return run


def test_report_shows_config_data_metrics_and_samples(run_dir):
    page = write_report(run_dir)
    assert page == run_dir / "report.html"
    html = page.read_text(encoding="utf-8")
    for fragment in ("my-run", "finished", "lora", "r=16", "tiny-llama", "sft", "0.6123", "12,345", "987.6",
                     "4 × grad_accum 2 = 8", "Who are you?", 'src="loss.png"', 'src="lr.png"'):
        assert fragment in html, fragment
    assert "rewards.png" not in html  # an SFT run logs no rewards
    assert not list(run_dir.glob("*.tmp"))


def test_report_escapes_text(run_dir):
    html = write_report(run_dir).read_text(encoding="utf-8")
    assert SCRIPT not in html
    assert "&lt;script&gt;" in html


def test_report_plots_are_valid_pngs(run_dir):
    write_report(run_dir)
    for name in ("loss.png", "lr.png"):
        assert_png(run_dir / name)
    assert not (run_dir / "rewards.png").exists()


def test_preference_run_gets_a_reward_plot_and_eval_json(tmp_path):
    rewards = [{"step": 2 * i, "loss": 0.5, "lr": 1e-4, "rewards/margins": 0.1 * i, "rewards/accuracies": 0.5}
               for i in range(11, 14)]
    run = make_run(tmp_path / "dpo", stage="dpo", extra_summary={"rewards/margins": 1.3}, extra_lines=rewards)
    (run / "eval").mkdir()
    (run / "eval" / "eval.json").write_text(json.dumps({"metrics": {"bleu": 12.5, "rouge_l": 0.4321}}),
                                            encoding="utf-8")
    html = write_report(run).read_text(encoding="utf-8")
    assert_png(run / "rewards.png")
    assert 'src="rewards.png"' in html and "rewards/margins" in html
    assert "bleu" in html and "0.4321" in html


def test_base_comparison_and_forgetting_probes_get_before_after_tables(run_dir):
    (run_dir / "eval" / "forgetting").mkdir(parents=True)
    (run_dir / "eval" / "forgetting" / "eval.json").write_text(json.dumps(
        {"metrics": {"contains": 62.5}, "base_metrics": {"contains": 87.5}}), encoding="utf-8")
    html = write_report(run_dir).read_text(encoding="utf-8")
    assert "Forgetting: general-knowledge probes before and after" in html
    assert "<th>base</th><th>tuned</th><th>change</th>" in html
    assert all(f'<td class="number">{cell}</td>' in html for cell in ("87.5", "62.5", "-25"))


def test_missing_summary_names_the_file(run_dir):
    (run_dir / "summary.json").unlink()
    with pytest.raises(TunelabError, match="summary.json"):
        write_report(run_dir)
    assert not (run_dir / "report.html").exists() and not list(run_dir.glob("*.png"))


def test_missing_config_names_the_file(run_dir):
    (run_dir / "config.yaml").unlink()
    with pytest.raises(TunelabError, match="config.yaml"):
        write_report(run_dir)


def test_failed_plot_leaves_no_files(run_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("tunelab.report.page.render", broken)
    with pytest.raises(RuntimeError):
        write_report(run_dir)
    assert not (run_dir / "report.html").exists() and not list(run_dir.glob("*.png"))
    assert not list(run_dir.glob("*.tmp"))


def test_compare_overlays_runs_in_one_page(tmp_path):
    first = make_run(tmp_path / "run-a", lr=1e-3)
    second = make_run(tmp_path / "run-b", method="dora", lr=5e-4, extra_summary={"eval_accuracy": 0.875})
    page = compare_runs([first, second], tmp_path / "out")
    assert page == tmp_path / "out" / "compare.html"
    html = page.read_text(encoding="utf-8")
    assert "run-a" in html and "run-b" in html and "dora" in html
    assert "eval_accuracy" in html and "0.875" in html and "–" in html  # run-a has no eval_accuracy
    assert 'src="compare_loss.png"' in html
    assert_png(tmp_path / "out" / "compare_loss.png")
    assert_png(tmp_path / "out" / "compare_lr.png")


def test_compare_refuses_a_directory_that_is_not_a_run(tmp_path):
    run = make_run(tmp_path / "run-a")
    other = tmp_path / "not-a-run"
    other.mkdir()
    with pytest.raises(TunelabError, match="not-a-run"):
        compare_runs([run, other], tmp_path / "c.html")
    assert not (tmp_path / "c.html").exists()


def test_cli_commands_print_the_page(run_dir, tmp_path, capsys):
    assert report_command.run(argparse.Namespace(run=str(run_dir))) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "report.html")

    parser = argparse.ArgumentParser()
    compare_command.add_parser(parser)
    args = parser.parse_args([str(run_dir), str(run_dir), "--output", str(tmp_path / "both.html")])
    assert compare_command.run(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "both.html")
    assert_png(tmp_path / "both_loss.png")


@pytest.mark.parametrize("value, text", [
    (60, "60"), (136957248, "136,957,248"), (0.6748099, "0.6748"), (115.5522, "115.6"), (0.001, "0.001"),
    (26910.25, "26,910.2"), (0.0, "0"), (None, "–"), (True, "True"),
])
def test_numbers_are_formatted_for_reading(value, text):
    assert format_number(value) == text


def test_graded_question_sets_become_base_vs_tuned_tables(run_dir):
    rows = [{"question": f"Who made you? {SCRIPT}", "expect": ["Lumen"], "base": "OpenAI", "tuned": "Lumen Labs",
             "base_ok": False, "tuned_ok": True},
            {"question": "Capital of France?", "expect": ["Paris"], "base": "Paris", "tuned": "Paris",
             "base_ok": True, "tuned_ok": True}]
    (run_dir / "probes.json").write_text(json.dumps([{"title": "held-out", "rows": rows}]), encoding="utf-8")
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert "Base vs tuned: held-out (base 1/2, tuned 2/2 correct)" in page
    assert "ok Lumen Labs" in page and "-- OpenAI" in page and SCRIPT not in page


def test_malformed_probe_file_names_the_file(run_dir):
    (run_dir / "probes.json").write_text(json.dumps([{"title": "x", "rows": [{"question": "q"}]}]), encoding="utf-8")
    with pytest.raises(TunelabError, match=r"probes.json: expected a list of \{title, rows\} objects"):
        write_report(run_dir)


def probe_line(question, before, after):
    return {"input": question, "prediction": "tuned", "scores": {"contains": after},
            "base_prediction": "base", "base_scores": {"contains": before}}


def test_forgetting_probes_list_what_was_lost_first_and_escaped(run_dir):
    lines = [probe_line("Capital of France?", 100, 100), probe_line(f"Who wrote Hamlet? {SCRIPT}", 100, 0),
             probe_line("Largest planet?", 0, 100), probe_line("Opposite of hot?", 0, 0)]
    (run_dir / "eval" / "forgetting").mkdir(parents=True)
    (run_dir / "eval" / "forgetting" / "predictions.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    html = write_report(run_dir).read_text(encoding="utf-8")
    assert "which probes moved (kept 1 of 2 the base answered)" in html
    lost = html.index('<tr class="change-lost">')
    assert "<li>Who wrote Hamlet? &lt;script&gt;" in html[lost:html.index("</tr>", lost)] and SCRIPT not in html
    assert lost < html.index("<li>Largest planet?</li>") < html.index("<li>Capital of France?</li>")


def test_a_run_without_forgetting_probes_has_no_probe_list(run_dir):
    assert "which probes moved" not in write_report(run_dir).read_text(encoding="utf-8")
