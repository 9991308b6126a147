"""The command line: bad input gives one clear line and a non-zero exit, never a traceback."""
import json
import os
import subprocess
import sys

import pytest

from tunelab.cli.main import main


def run_cli(*args, stdin: str | None = None, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "tunelab", *map(str, args)], capture_output=True, text=True,
                          input=stdin, env=env, cwd=cwd, timeout=300)


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0]


def test_config_typo_exits_2_with_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  path: x.json\ntrain:\n  lrr: 0.1\n", encoding="utf-8")
    assert_clean_error(run_cli("train", config), f"{config}:4", "train.lrr", "did you mean 'train.lr'")


def test_debug_flag_shows_the_traceback(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  path: x.json\ntrain:\n  lrr: 0.1\n", encoding="utf-8")
    assert main(["train", str(config)]) == 2
    with pytest.raises(Exception, match="train.lrr"):
        main(["--debug", "train", str(config)])
    with pytest.raises(Exception, match="train.lrr"):
        main(["train", str(config), "--debug"])


@pytest.mark.parametrize("content, fragments", [
    ('{"instruction": "a", "output": "b"}\n{"instruction": "a" "output": "b"}\n', ["data.jsonl:2", "invalid JSON"]),
    ('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n', ["data.jsonl:2", "missing field 'output'"]),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}\n',
     ["data.jsonl:1", "'bot'", "assistant"]),
    ("", ["data.jsonl", "empty"]),
], ids=["broken-json", "missing-field", "unknown-role", "empty"])
def test_bad_data_is_named_with_its_line(tmp_path, tiny_model_dir, write_config, content, fragments):
    data = tmp_path / "data.jsonl"
    data.write_text(content, encoding="utf-8")
    result = run_cli("train", write_config(tiny_model_dir, data, "bad"))
    assert_clean_error(result, *fragments)
    run = tmp_path / "runs" / "bad"
    assert (run / "status").read_text().strip() == "failed"
    assert not (run / "model").exists() and not list(run.glob("checkpoint-*"))


def test_non_utf8_data_file_is_named(tmp_path, tiny_model_dir, write_config):
    data = tmp_path / "latin1.jsonl"
    data.write_bytes('{"instruction": "café", "output": "b"}\n'.encode("latin-1"))
    assert_clean_error(run_cli("train", write_config(tiny_model_dir, data, "enc")), "latin1.jsonl", "UTF-8")


def test_missing_data_file_and_dataset_name(tmp_path, tiny_model_dir, write_config):
    assert_clean_error(run_cli("train", write_config(tiny_model_dir, tmp_path / "nope.json", "m1")),
                       "nope.json", "no such file", str(tmp_path))
    config = write_config(tiny_model_dir, "builtin:identiy", "m2")
    assert_clean_error(run_cli("train", config), "identiy", "did you mean 'identity'")


def test_missing_model_path_says_where_it_looked(tmp_path, chat_file, write_config):
    result = run_cli("train", write_config(tmp_path / "no-model", chat_file, "nomodel"))
    assert_clean_error(result, "model.path", "no-model", "not found")


def test_hub_id_offline_fails_clearly(chat_file, write_config):
    result = run_cli("train", write_config("some-org/some-model-that-is-not-here", chat_file, "hub"))
    assert_clean_error(result, "some-org/some-model-that-is-not-here", "hub")


def test_train_overrides_then_generate_and_chat(tmp_path, tiny_model_dir, chat_file, write_config):
    config = write_config(tiny_model_dir, chat_file, "cli")
    trained = run_cli("train", config, "train.max_steps=1", "train.lr=0.001")
    assert trained.returncode == 0, trained.stderr
    run = tmp_path / "runs" / "cli"
    assert json.loads((run / "summary.json").read_text())["global_step"] == 1

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n{"messages": [{"role": "user", "content": "Who?"}], "id": 7}\n')
    out = tmp_path / "answers.jsonl"
    generated = run_cli("generate", "--model", run, "--input", prompts, "--output", out, "--max-new-tokens", "4",
                        "--dtype", "fp32")
    assert generated.returncode == 0, generated.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.get("id") for line in lines] == [None, 7] and all("response" in line for line in lines)

    chatted = run_cli("chat", "--model", run, "--max-new-tokens", "3", "--system", "Be brief.",
                      stdin="Hello\nAnd again\n/exit\n")
    assert chatted.returncode == 0, chatted.stderr
    assert chatted.stdout.count("assistant> ") == 2


def test_generate_rejects_a_broken_prompt_file(tmp_path, tiny_model_dir):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n{"nothing": 1}\n')
    result = run_cli("generate", "--model", tiny_model_dir, "--input", prompts, "--output", tmp_path / "o.jsonl")
    assert_clean_error(result, "p.jsonl:2", "prompt")
    assert not (tmp_path / "o.jsonl").exists()


def test_generate_failing_half_way_leaves_no_output_and_no_partial_file(tmp_path, monkeypatch):
    import argparse

    from tunelab.cli import generate

    class Failing:
        calls = 0

        def generate(self, conversations, settings):
            Failing.calls += 1
            if Failing.calls == 2:
                raise RuntimeError("out of memory")
            return ["ok"] * len(conversations)

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(f'{{"prompt": "Hi {i}"}}\n' for i in range(4)))
    monkeypatch.setattr(generate, "load_engine", lambda args: Failing())
    parser = argparse.ArgumentParser()
    generate.add_parser(parser)
    args = parser.parse_args(["--model", "x", "--input", str(prompts), "--output", str(tmp_path / "o.jsonl"),
                              "--batch-size", "2"])
    with pytest.raises(RuntimeError):
        generate.run(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]


@pytest.mark.parametrize("order", [
    ["{cfg}", "--nproc", "2", "train.batch_size=2"],
    ["--nproc", "2", "{cfg}", "train.batch_size=2"],
    ["{cfg}", "train.lr=0.5", "--nproc", "2", "train.batch_size=2"],
], ids=["options-between", "options-first", "overrides-around"])
def test_train_takes_options_and_overrides_in_any_order(order, tmp_path, tiny_model_dir, chat_file, write_config,
                                                        monkeypatch):
    """What the ranks are started with is the same config and overrides, wherever --nproc stands."""
    from tunelab.cli import train as train_command

    cfg = str(write_config(tiny_model_dir, chat_file, "mixed"))
    launched = []
    monkeypatch.setattr(train_command, "_run_launcher", lambda command: launched.append(command) or 0)
    assert main(["train", *[cfg if item == "{cfg}" else item for item in order]]) == 0
    expected = [cfg, "train.lr=0.5", "train.batch_size=2"] if "train.lr=0.5" in order else [cfg, "train.batch_size=2"]
    assert launched[0][launched[0].index("tunelab") + 1:] == ["train", *expected]
    assert "--nproc-per-node=2" in launched[0]


def test_plan_takes_options_and_overrides_in_any_order(tiny_model_dir, chat_file, write_config, capsys):
    cfg = str(write_config(tiny_model_dir, chat_file, "mixed-plan"))
    plans = []
    for argv in (["plan", cfg, "--json", "train.batch_size=2"], ["plan", "--json", cfg, "train.batch_size=2"]):
        assert main(argv) == 0
        plans.append(json.loads(capsys.readouterr().out))
    assert plans[0]["steps_per_epoch"] == plans[1]["steps_per_epoch"] == 6  # 12 examples, 2 a step (not 4)


def test_an_unknown_option_among_overrides_is_still_refused(tmp_path, tiny_model_dir, chat_file, write_config, capsys):
    cfg = str(write_config(tiny_model_dir, chat_file, "unknown-option"))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", cfg, "--nprocs", "2", "train.batch_size=2"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --nprocs 2" in capsys.readouterr().err


def test_a_lora_run_prints_tunelab_lines_and_progress_not_library_noise(tiny_model_dir, chat_file, write_config):
    """No bitsandbytes kernel notice, DeepSpeed accelerator guess, deprecation warning or raw metric dict: the
    screen holds tunelab's lines and one readable progress line per logging step (metrics.jsonl has the rest)."""
    result = run_cli("train", write_config(tiny_model_dir, chat_file, "quiet", train={"max_steps": 3}))
    assert result.returncode == 0, result.stderr
    screen = result.stdout + result.stderr
    for noise in ("kernels-community", "real_accelerator", "Setting accelerator", "is_gradient_checkpointing",
                  "FutureWarning", "DeprecationWarning", "{'loss'", "'learning_rate'"):
        assert noise not in screen, noise
    progress = [line for line in screen.splitlines() if line.startswith("[tunelab] step ")]
    assert [line.split(" · ")[0] for line in progress] == ["[tunelab] step 1/3", "[tunelab] step 2/3",
                                                          "[tunelab] step 3/3"]
    assert all(" · loss " in line and " tokens/s" in line and " · ETA " in line for line in progress)


def test_the_command_leaves_at_once_yet_flushes_its_output_and_runs_exit_handlers(tmp_path):
    """`entry` skips the interpreter's teardown (os._exit): what a piped stdout still buffers, the exit code and
    the atexit handlers (logging's flush among them) must all survive that."""
    script = ("import atexit, sys\n"
              "from tunelab.cli.main import entry\n"
              "atexit.register(lambda: print('handler ran'))\n"
              "sys.argv = ['tunelab', *sys.argv[1:]]\n"
              "entry()\n")
    listed = subprocess.run([sys.executable, "-c", script, "methods"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "lora" in listed.stdout and listed.stdout.rstrip().endswith("handler ran")
    failed = subprocess.run([sys.executable, "-c", script, "train", str(tmp_path / "missing.yaml")],
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2 and "missing.yaml" in failed.stderr and "handler ran" in failed.stdout
