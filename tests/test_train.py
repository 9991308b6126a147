"""Train -> save -> load -> generate round trips on a tiny random model, and the run directory contract."""
import json

import pytest
import yaml

from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.runs import RunDir, load_any
from tunelab.runs.checkpoints import all_checkpoints, complete_checkpoints
from tunelab.serve import ChatEngine, GenerationSettings
from tunelab.train import train


@pytest.fixture()
def trained(tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "base"))
    return train(config)


def test_two_step_round_trip_writes_the_run_contract(trained):
    run = RunDir(trained.run_dir)
    assert run.status() == "finished"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "provenance.json", "status"):
        assert (run.path / name).is_file(), name
    assert (run.model_dir / "adapter_model.safetensors").is_file()
    assert (run.model_dir / "chat_template.jinja").is_file()
    assert [p.name for p in complete_checkpoints(run.path)] == ["checkpoint-2"]
    summary = json.loads(run.summary_path.read_text())
    assert summary["global_step"] == 2 and summary["world_size"] == 1
    assert 0 < summary["trainable_params"] < summary["total_params"]
    for key in ("train_loss", "train_runtime_s", "train_tokens_per_s"):
        assert summary[key] > 0


def test_metrics_lines_carry_step_loss_lr_tokens_elapsed(trained):
    lines = [json.loads(l) for l in (trained.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    for line in lines:
        assert {"loss", "lr", "tokens", "elapsed_s"} <= line.keys()
    assert 0 < lines[0]["tokens"] < lines[1]["tokens"]


def test_provenance_records_base_and_versions(trained, tiny_model_dir, chat_file):
    provenance = json.loads((trained.run_dir / "provenance.json").read_text())
    assert provenance["base_location"] == str(tiny_model_dir)
    assert provenance["base_fingerprint"] and provenance["libraries"]["torch"]
    assert str(chat_file) in provenance["data_hashes"]


def test_saved_adapter_generates_like_the_trained_model(trained):
    engine = ChatEngine(load_any(str(trained.run_dir)))
    messages = [[{"role": "user", "content": "What is your name?"}], [{"role": "user", "content": "Hi"}]]
    answers = engine.generate(messages, GenerationSettings(max_new_tokens=8))
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert engine.loaded.method is not None
    with engine.base_model():
        base_answers = engine.generate(messages, GenerationSettings(max_new_tokens=8))
    assert len(base_answers) == 2


def test_checkpoint_directory_loads_as_a_model(trained):
    loaded = load_any(str(trained.run_dir / "checkpoint-2"))
    assert loaded.run.weights.name == "checkpoint-2"


def test_training_teaches_the_tiny_model(tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "learn", train={"max_steps": 40, "lr": 3e-2}))
    result = train(config)
    lines = [json.loads(l) for l in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["loss"] < 0.5 * lines[0]["loss"]
    engine = ChatEngine(load_any(str(result.run_dir)))
    answer = engine.generate([[{"role": "user", "content": "What is your name? (3)"}]],
                             GenerationSettings(max_new_tokens=12))[0]
    assert answer == "My name is Quill."  # learned the answer and to stop (EOS trained)


def test_refuses_to_overwrite_a_finished_run(trained, tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "base"))
    with pytest.raises(TunelabError, match="output.overwrite"):
        train(config)
    config.output.overwrite = True
    assert train(config).run_dir == trained.run_dir


def test_failure_before_training_leaves_no_weights(tiny_model_dir, tmp_path, write_config):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": oops}\n', encoding="utf-8")
    config = load_config(write_config(tiny_model_dir, bad, "failed"))
    with pytest.raises(TunelabError, match=r"bad.jsonl:2"):
        train(config)
    run = RunDir(config.output.dir)
    assert run.status() == "failed"
    assert not run.model_dir.exists() and not all_checkpoints(run.path)


def test_continues_the_same_adapter_from_a_run(trained, chat_file, write_config):
    config = load_config(write_config(trained.run_dir, chat_file, "again"))
    result = train(config)
    provenance = json.loads((result.run_dir / "provenance.json").read_text())
    assert provenance["base_location"] == json.loads((trained.run_dir / "provenance.json").read_text())["base_location"]
    assert (result.run_dir / "model" / "adapter_model.safetensors").is_file()


def test_adapter_refuses_a_changed_base(trained, tiny_model_dir):
    provenance_path = trained.run_dir / "provenance.json"
    provenance = json.loads(provenance_path.read_text())
    provenance["base_fingerprint"] = "0" * 16
    provenance_path.write_text(json.dumps(provenance))
    with pytest.raises(TunelabError, match="not the one it was trained on"):
        load_any(str(trained.run_dir))


def test_pretrain_stage_on_plain_text(tiny_model_dir, tmp_path, write_config):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(f"The quick brown fox number {i} jumps." for i in range(20)), encoding="utf-8")
    config = load_config(write_config(tiny_model_dir, text, "pt", train={"stage": "pretrain"}))
    assert train(config).summary["global_step"] == 2


def test_stage_rejects_data_of_the_wrong_kind(tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "pt2", train={"stage": "pretrain"}))
    with pytest.raises(TunelabError, match=r"chat.json:\d+: train.stage 'pretrain' needs plain text"):
        train(config)


def test_validation_split_reports_eval_loss(tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "val", data={"val_size": 0.25}))
    result = train(config)
    assert result.summary["eval_loss"] > 0
    config_text = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert config_text["data"]["val_size"] == 0.25


def test_second_run_reads_tokenized_data_from_the_cache(tiny_model_dir, chat_file, write_config, monkeypatch):
    from tunelab.stages.sft import SftStage

    first = train(load_config(write_config(tiny_model_dir, chat_file, "cache1")))

    def no_tokenizing(self, examples, tokenizer):
        raise AssertionError("tokenized again although the cache holds these rows")

    monkeypatch.setattr(SftStage, "tokenize", no_tokenizing)
    second = train(load_config(write_config(tiny_model_dir, chat_file, "cache2")))
    assert second.summary["examples"] == first.summary["examples"]
    assert second.summary["train_loss"] == pytest.approx(first.summary["train_loss"], rel=1e-6)
    with pytest.raises(AssertionError, match="tokenized again"):  # another max_length is another key
        train(load_config(write_config(tiny_model_dir, chat_file, "cache3", train={"max_length": 64})))


def test_cache_keeps_datasets_of_one_directory_apart(tiny_model_dir, write_config):
    """builtin:identity and builtin:instructions live in one directory with the same file hashes."""
    sizes = [train(load_config(write_config(tiny_model_dir, f"builtin:{name}", f"{name}{i}"))).summary["examples"]["kept"]
             for i, name in enumerate(("identity", "instructions", "identity"))]
    assert sizes[0] == sizes[2] == 92 and sizes[1] >= 145  # a long one may not fit max_length 128 here


def test_tensorboard_logs_stay_in_the_run_tensorboard_folder(tiny_model_dir, chat_file, write_config):
    """The final evaluation logs after TensorBoard's writer closed; they must not open RUN/runs/<date>."""
    config = load_config(write_config(tiny_model_dir, chat_file, "tb", data={"val_size": 2},
                                      train={"report_to": "tensorboard", "eval_steps": 1}))
    run_dir = train(config).run_dir
    assert not (run_dir / "runs").exists()
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) >= 1
