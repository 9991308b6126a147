"""data.streaming: lazy reading with line-numbered errors, and a streamed run sized by max_steps."""
import json

import pytest

from tunelab.config import load_config
from tunelab.data.streaming import check_streamable, iter_examples
from tunelab.errors import TunelabError
from tunelab.train import train


@pytest.fixture()
def stream_file(tmp_path):
    path = tmp_path / "stream.jsonl"
    lines = [json.dumps({"instruction": f"Say {i}.", "input": "", "output": f"{i}"}) for i in range(20)]
    path.write_text("\n".join(lines) + "\n{broken\n", encoding="utf-8")
    return path


def test_examples_are_read_lazily_and_errors_name_the_line(stream_file):
    examples = iter_examples(stream_file, None)
    first = [next(examples) for _ in range(3)]  # the broken last line is not read yet
    assert first[0]["messages"][-1] == {"role": "assistant", "content": "0"}
    with pytest.raises(TunelabError, match=rf"{stream_file}:21: invalid JSON"):
        list(examples)


def test_only_line_based_files_stream(tmp_path):
    whole = tmp_path / "data.json"
    whole.write_text("[]", encoding="utf-8")
    with pytest.raises(TunelabError, match="data.streaming: .*data.json cannot be streamed.*.jsonl, .txt"):
        check_streamable(str(whole))


@pytest.mark.parametrize("train_section, data_section, message", [
    ({"max_steps": 0}, {}, "set train.max_steps"),
    ({"max_steps": 2}, {"val_size": 0.2}, "data.val_size: 0"),
])
def test_streaming_config_errors(tiny_model_dir, stream_file, write_config, train_section, data_section, message):
    path = write_config(tiny_model_dir, stream_file, "bad", train=train_section,
                        data={"streaming": True, **data_section})
    with pytest.raises(TunelabError, match=message):
        load_config(path)


def test_streamed_run_trains_for_max_steps(tiny_model_dir, tmp_path, write_config):
    path = tmp_path / "ok.jsonl"
    path.write_text("\n".join(json.dumps({"instruction": f"Say {i}.", "input": "", "output": f"{i}"})
                              for i in range(10)), encoding="utf-8")
    config = load_config(write_config(tiny_model_dir, path, "streamed", data={"streaming": True},
                                      train={"max_steps": 4, "batch_size": 4}))
    result = train(config)
    assert result.summary["global_step"] == 4  # 10 examples, 4 per step: the stream restarts each epoch
    assert result.summary["train_tokens"] > 0 and result.summary["examples"]["kept"] >= 10


def test_plan_samples_a_stream(tiny_model_dir, tmp_path, write_config):
    from tunelab.plan import plan

    path = tmp_path / "plan.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"Document number {i}."}) for i in range(30)), encoding="utf-8")
    config = load_config(write_config(tiny_model_dir, path, "plan", data={"streaming": True},
                                      train={"stage": "pretrain", "max_steps": 7, "batch_size": 4}))
    result = plan(config)
    assert result.examples == 30 and result.total_steps == 7 and result.total_seconds > 0
