"""Two tiny tasks in sequence: each trains from the previous result with the Fisher carried forward, and the
score matrix (before, after task 1, after task 2) with its summary, heat-map and page is written."""
import json

import pytest
import yaml

from tunelab.cli.main import main
from tunelab.continual.matrix import ScoreMatrix


def _task(tmp_path, tiny_model_dir, name, answer):
    data = tmp_path / f"{name}.jsonl"
    data.write_text("\n".join(json.dumps({"instruction": f"Question {i} about {name}?", "output": answer})
                              for i in range(6)) + "\n", encoding="utf-8")
    config = {"model": {"path": str(tiny_model_dir)}, "data": {"path": str(data)},
              "method": {"name": "lora", "r": 4, "alpha": 8},
              "train": {"max_steps": 2, "batch_size": 3, "lr": 1e-2, "max_length": 64, "precision": "fp32",
                        "report_to": "none"},
              "eval": {"data": str(data), "metrics": ["contains"], "max_new_tokens": 3, "limit": 3}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path.name


def test_two_tasks_write_the_matrix_heatmap_and_report(tiny_model_dir, tmp_path, capsys):
    from PIL import Image

    sequence = {"continual": {"method": "ewc", "fisher_samples": 3,
                              "tasks": [_task(tmp_path, tiny_model_dir, "one", "Quill."),
                                        _task(tmp_path, tiny_model_dir, "two", "Teal.")]},
                "output": {"dir": str(tmp_path / "seq")}}
    (tmp_path / "seq.yaml").write_text(yaml.safe_dump(sequence), encoding="utf-8")
    assert main(["train", str(tmp_path / "seq.yaml")]) == 0
    out = tmp_path / "seq"
    matrix = json.loads((out / "matrix.json").read_text())
    assert matrix["columns"] == ["task-1", "task-2", "probes"]
    assert matrix["rows"] == ["before", "after task-1", "after task-2"]
    assert len(matrix["scores"]) == 3 and all(len(row) == 3 for row in matrix["scores"])
    assert {"average_accuracy", "backward_transfer", "forward_transfer", "probes_before", "probes_after"} <= set(matrix)
    Image.open(out / "matrix.png").verify()
    assert "task-1/report.html" in (out / "report.html").read_text()
    second = yaml.safe_load((out / "task-2" / "config.yaml").read_text())
    assert second["model"]["path"] == str(out / "task-1") and second["continual"]["fisher"] == str(out / "task-1")
    assert (out / "task-2" / "fisher.safetensors").is_file()
    assert (out / "status").read_text().strip() == "finished"
    assert "| trained \\ scored |" in capsys.readouterr().out


def test_a_task_without_a_score_is_refused_before_training(tiny_model_dir, tmp_path, capsys):
    name = _task(tmp_path, tiny_model_dir, "one", "Quill.")
    config = yaml.safe_load((tmp_path / name).read_text())
    config["eval"] = None
    (tmp_path / name).write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "seq.yaml").write_text(yaml.safe_dump({"continual": {"tasks": [name]},
                                                      "output": {"dir": str(tmp_path / "seq")}}))
    assert main(["train", str(tmp_path / "seq.yaml")]) == 2
    assert "needs eval.data" in capsys.readouterr().err and not (tmp_path / "seq").exists()


def test_transfer_numbers_follow_their_definitions():
    matrix = ScoreMatrix(["a", "b"], ["before", "after a", "after b"],
                         [[10, 20, 80], [90, 30, 70], [60, 95, 75]])
    summary = matrix.summary()
    assert summary["average_accuracy"] == pytest.approx((60 + 95) / 2)
    assert summary["backward_transfer"] == pytest.approx(60 - 90)   # a lost 30 points to b
    assert summary["forward_transfer"] == pytest.approx(30 - 20)    # a gave b 10 points before b trained
    assert (summary["probes_before"], summary["probes_after"]) == (80, 75)


def test_an_interrupted_sequence_resumes_without_redoing_finished_work(tiny_model_dir, tmp_path, capsys,
                                                                        monkeypatch):
    import os
    import signal

    from transformers import TrainerCallback

    import tunelab.continual.sequence as sequence_module
    import tunelab.train as train_module

    class TermInTask2(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if "task-2" in args.output_dir and state.global_step == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    build = train_module.build_callbacks
    monkeypatch.setattr(train_module, "build_callbacks", lambda *args: [*build(*args), TermInTask2()])
    tasks = [_task(tmp_path, tiny_model_dir, "one", "Quill."), _task(tmp_path, tiny_model_dir, "two", "Teal.")]
    (tmp_path / "seq.yaml").write_text(yaml.safe_dump({"continual": {"tasks": tasks},
                                                      "output": {"dir": str(tmp_path / "seq")}}))
    out = tmp_path / "seq"

    assert main(["train", str(tmp_path / "seq.yaml")]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert f"saved checkpoint-2 of task-2; resume the sequence with: tunelab train {out / 'sequence.yaml'} " \
           "train.resume=true" in err
    assert (out / "status").read_text().strip() == "interrupted"
    task1_weights = (out / "task-1" / "model" / "adapter_model.safetensors").stat().st_mtime_ns

    monkeypatch.undo()
    scored = []
    score_all = sequence_module.score_all
    monkeypatch.setattr(sequence_module, "score_all", lambda model, tasks, where: scored.append(where.name)
                        or score_all(model, tasks, where))
    assert main(["train", str(out / "sequence.yaml"), "train.resume=true"]) == 0
    assert scored == ["after-task-2"]  # before and after-task-1 were kept from the first attempt
    assert (out / "task-1" / "model" / "adapter_model.safetensors").stat().st_mtime_ns == task1_weights
    assert json.loads((out / "task-2" / "summary.json").read_text())["resumed_from"] == "checkpoint-2"
    assert len(json.loads((out / "matrix.json").read_text())["scores"]) == 3
    assert (out / "status").read_text().strip() == "finished"
