"""The web UI in a real headless Chromium: the page renders its forms, a tiny-model run started from the
browser finishes with its loss curve on the page, the chat answers, and CLI errors show as readable text."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "llamafactory"


def test_page_renders_train_form_runs_and_chat(page, form, tmp_path):
    tabs = page.get_by_role("tab").all_inner_texts()
    assert tabs == ["Train", "Runs", "Evaluate", "Chat"]
    form.page.locator("#f-method-name input").click()
    methods = page.locator("[role=option]").all_inner_texts()
    page.keyboard.press("Escape")
    assert {"lora", "qlora", "dora", "full", "freeze", "prefix", "ia3", "adalora", "moe-lora"} <= {m.strip("✓\n ") for m in methods}
    # data: built-in sets, or a LLaMA-Factory folder whose dataset_info.json fills the dataset choices
    form.radio("f-data-source", "file or folder")
    form.fill("f-data-path", str(ASSETS))
    page.locator("#f-datasets input").first.click()
    datasets = [d.strip("✓\n ") for d in page.locator("[role=option]").all_inner_texts()]
    page.keyboard.press("Escape")
    assert datasets == list(json.loads((ASSETS / "dataset_info.json").read_text()))
    assert "path: " + str(ASSETS) in form.wait_text("config-yaml", str(ASSETS))
    form.tab("Runs")
    assert page.locator("#runs-table").is_visible()
    form.tab("Chat")
    assert page.locator("#chat-tuned").is_visible() and page.locator("#chat-message").is_visible()
    page.screenshot(path=str(tmp_path / "chat-tab.png"))


def test_tiny_run_started_in_the_browser_finishes_with_its_curve_and_chats(page, form, tiny_model_dir, ui_server,
                                                                           tmp_path):
    runs_dir = ui_server[1]
    form.radio("f-model-source", "local folder or .gguf")
    form.fill("f-model-path", str(tiny_model_dir))
    form.radio("f-data-source", "file or folder")
    form.fill("f-data-path", str(ASSETS))
    form.choose("f-datasets", "identity")
    form.fill("f-method-r", "4")
    for elem_id, value in (("f-train-max-steps", "6"), ("f-train-batch-size", "4"), ("f-train-lr", "0.01"),
                           ("f-train-max-length", "128")):
        form.fill(elem_id, value)
    form.choose("f-train-precision", "fp32")
    page.get_by_text("Advanced").click()
    form.fill("f-train-logging-steps", "1")
    form.choose("f-train-report-to", "none")
    form.fill("f-run-name", "browser-run")
    form.wait_text("config-yaml", "logging_steps: 1")
    preview = yaml.safe_load(form.code("config-yaml"))
    assert preview["model"]["path"] == str(tiny_model_dir) and preview["data"]["dataset"] == "identity"
    assert preview["train"]["max_steps"] == 6 and preview["method"]["r"] == 4
    page.screenshot(path=str(tmp_path / "train-form.png"), full_page=True)

    page.locator("#start-button").click()
    form.wait_text("run-status", "browser-run")  # the page switched to the Runs tab, this run selected
    status = form.wait_text("run-status", "finished", timeout=180)
    assert "step 6/6" in status and "report.html" in status
    lines = page.locator("#loss-plot svg .mark-line path, #loss-plot svg path.mark-line, #loss-plot svg g.mark-line path")
    try:  # the plot is drawn on the poll after the status line, not with it
        lines.first.wait_for(state="attached", timeout=15000)
    except Exception:
        pass
    assert lines.count() >= 1, page.locator("#loss-plot").inner_html()[:2000]
    page.screenshot(path=str(tmp_path / "run-finished.png"), full_page=True)
    metrics = [json.loads(line) for line in (runs_dir / "browser-run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3, 4, 5, 6]
    assert (runs_dir / ".ui" / "configs" / "browser-run.yaml").is_file()
    assert "finished: 6 steps" in form.value("run-log")

    form.tab("Chat")
    model = page.locator("#chat-model input").first
    model.fill("browser-run")
    model.press("Enter")
    form.fill("chat-system", "Be brief.")
    box = page.locator("#chat-message textarea").first
    box.fill("Who are you?")
    box.press("Enter")
    answer = page.locator("#chat-tuned .bot, #chat-tuned [data-testid=bot]").last
    answer.wait_for(timeout=60_000)
    deadline_text = form.wait_text("chat-tuned", "Who are you?")
    assert "Who are you?" in deadline_text
    page.wait_for_function("() => { const b = document.querySelectorAll('#chat-tuned [data-testid=bot]');"
                           " return b.length && b[b.length - 1].innerText.trim().length > 0; }", timeout=60_000)
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)


def test_upload_inspect_and_plan_show_results_and_cli_errors(page, form, tiny_model_dir, ui_server, tmp_path):
    runs_dir = ui_server[1]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c" "output": "d"}\n', encoding="utf-8")
    form.radio("f-data-source", "file or folder")
    with page.expect_file_chooser() as chooser:
        page.locator("#data-upload").click()
    chooser.value.set_files(str(broken))
    uploaded = runs_dir / ".ui" / "uploads" / "broken.jsonl"
    form.wait_text("config-yaml", str(uploaded))  # the upload is kept in the runs folder and named in the config
    assert uploaded.read_text() == broken.read_text()
    form.fill("f-train-lr", "0")
    assert "train.lr: Input should be greater than 0" in form.wait_text("config-problem", "train.lr")
    form.fill("f-train-lr", "0.001")
    page.locator("#inspect-button").click()
    message = form.wait_text("train-status", "invalid JSON", timeout=90)
    assert "broken.jsonl:2: invalid JSON (Expecting ',' delimiter" in message and "Traceback" not in message

    good = tmp_path / "good.jsonl"
    good.write_text("".join('{"instruction": "Who are you? (%d)", "output": "My name is Quill."}\n' % i
                            for i in range(6)), encoding="utf-8")
    form.radio("f-model-source", "local folder or .gguf")
    form.fill("f-model-path", str(tiny_model_dir))
    form.fill("f-data-path", str(good))
    form.fill("f-train-max-length", "128")
    form.choose("f-train-precision", "fp32")
    page.locator("#inspect-button").click()
    assert "6 examples" in form.wait_text("train-status", "inspected", timeout=90) + form.value("inspect-output")
    assert page.locator("#inspect-lengths img").count() == 1
    page.locator("#plan-button").click()
    form.wait_text("train-status", "plan:", timeout=120)
    plan = form.value("plan-output")
    assert "parameters" in plan and "tokens/s measured" in plan
    page.screenshot(path=str(tmp_path / "plan.png"), full_page=True)
