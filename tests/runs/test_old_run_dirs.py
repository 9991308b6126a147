"""Run directories written before the specs and compat changes (commit a8df092: config.yaml stores every key
with its value, as that version wrote it) still load for generate, eval, serve and merge. The fixture is a
`full` run (the whole model inside) and a `lora` run on a tiny base kept beside them; the base's absolute path
as recorded then is rewritten to where the copy lies, as a user who moved the base would."""
import json
import shutil
from pathlib import Path

import pytest

from tunelab.cli.main import main

FIXTURE = Path(__file__).resolve().parents[1] / "assets" / "runs_a8df092"
RECORDED_BASE = "/tmp/oldruns/base"


@pytest.fixture()
def old_runs(tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(FIXTURE, folder)
    for path in folder.rglob("*"):
        if path.suffix in (".yaml", ".json") and RECORDED_BASE in path.read_text(encoding="utf-8"):
            path.write_text(path.read_text(encoding="utf-8").replace(RECORDED_BASE, str(folder / "base")),
                            encoding="utf-8")
    return folder


@pytest.mark.parametrize("run", ["full", "lora"])
def test_an_old_run_generates_evaluates_and_serves(old_runs, run, tmp_path):
    from tunelab.runs import load_any
    from tunelab.serve import ChatEngine
    from tunelab.serve.engine import GenerationSettings

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is your name?"}) + "\n", encoding="utf-8")
    assert main(["generate", "--model", str(old_runs / run), "--input", str(prompts), "--output",
                 str(tmp_path / "out.jsonl"), "--max-new-tokens", "4"]) == 0
    assert "response" in json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))
    data = tmp_path / "eval.json"
    data.write_text(json.dumps([{"instruction": "What is your name?", "input": "", "output": "Quill."}] * 3),
                    encoding="utf-8")
    assert main(["eval", "--model", str(old_runs / run), "--data", str(data), "--output", str(tmp_path / "ev"),
                 "--metrics", "perplexity", "--max-new-tokens", "4"]) == 0
    engine = ChatEngine(load_any(str(old_runs / run)), "cpu")
    completion = engine.complete(engine.chat_prompt([{"role": "user", "content": "Hi"}]),
                                 GenerationSettings(max_new_tokens=3))
    assert completion.finish_reason in ("stop", "length")


def test_an_old_lora_run_merges(old_runs, tmp_path):
    from transformers import AutoModelForCausalLM

    assert main(["merge", "--model", str(old_runs / "lora"), "--output", str(tmp_path / "merged")]) == 0
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "merged").config.num_hidden_layers == 2
