"""The demo's path on the tiny model (the real model's run is tests/test_demo_slow.py): its report ends as
finished and holds the base-vs-tuned tables it printed."""


def test_demo_report_says_finished_and_holds_the_base_vs_tuned_tables(tiny_model_dir, tmp_path):
    import html
    import json

    from tunelab.demo import run_demo

    demo = run_demo([f"model.path={tiny_model_dir}", f"output.dir={tmp_path / 'identity'}", "train.max_steps=2",
                     "train.precision=fp32", "train.report_to=none"])
    assert (demo.run_dir / "status").read_text().strip() == "finished"
    page = (demo.run_dir / "report.html").read_text(encoding="utf-8")
    assert 'class="status status-finished">finished<' in page and 'class="status status-running"' not in page
    saved = json.loads((demo.run_dir / "probes.json").read_text())
    assert [item["title"] for item in saved] == ["held-out identity questions", "general-knowledge probes"]
    for title, results in (("held-out identity questions", demo.identity), ("general-knowledge probes", demo.general)):
        heading = (f"Base vs tuned: {title} (base {sum(r.base_ok for r in results)}/{len(results)}, "
                   f"tuned {sum(r.tuned_ok for r in results)}/{len(results)} correct)")
        assert heading in page
    first = demo.identity[0]
    assert html.escape(first.question) in page and html.escape(first.tuned, quote=True) in page


def test_the_demo_command_prints_its_tables_and_no_library_noise(tiny_model_dir, tmp_path):
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tunelab.demo", f"model.path={tiny_model_dir}", f"output.dir={tmp_path / 'demo'}",
         "train.max_steps=2", "train.precision=fp32", "train.report_to=none"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert "== held-out identity questions: base" in result.stdout and "report (curves" in result.stdout
    screen = result.stdout + result.stderr
    for noise in ("kernels-community", "real_accelerator", "{'loss'", "FutureWarning"):
        assert noise not in screen, noise
