"""The throughput benchmark's setups stay runnable: each method's tunelab config validates, LLaMA-Factory's
config names the same work, and the table compares each row with the careful script doing the same method.
Nothing here trains or times anything (the benchmark itself is run by hand, see bench/README.md)."""
import json
from pathlib import Path

import pytest

from tunelab.config.loader import validate

BENCH_NAME = "train_throughput"  # loaded by the bench fixture (conftest.py)


@pytest.mark.parametrize("method", ["lora", "full", "qlora"])
def test_each_methods_tunelab_config_is_valid(bench, method, tmp_path):
    args = bench.parse_args(["--precision", "fp32"])
    config = validate(bench.tunelab_config(args, tmp_path / "data.json", tmp_path / "run", method))
    assert config.method.name == method and config.train.precision == "fp32"
    assert config.train.lr == bench.LEARNING_RATES[method]


def test_llamafactory_does_the_same_lora_work(bench, tmp_path, monkeypatch):
    import yaml

    monkeypatch.setattr(bench, "llamafactory_cli", lambda: Path("/venv/bin/llamafactory-cli"))
    args = bench.parse_args(["--llamafactory-template", "qwen"])
    command, out = bench.llamafactory_command(args, tmp_path / "data.jsonl", tmp_path, "/models/m", "bf16")
    config = yaml.safe_load(Path(command[-1]).read_text())
    assert command[:2] == ["/venv/bin/llamafactory-cli", "train"]
    assert (config["lora_rank"], config["lora_alpha"], config["lora_dropout"]) == (8, 16, 0.0)
    assert config["cutoff_len"] == args.max_length and config["per_device_train_batch_size"] == args.batch_size
    assert config["bf16"] and config["use_cpu"] and config["finetuning_type"] == "lora"
    assert config["template"] == "qwen"
    info = json.loads((tmp_path / "llamafactory_data" / "dataset_info.json").read_text())["bench"]
    assert info["formatting"] == "sharegpt" and info["columns"] == {"messages": "messages"}
    assert info["tags"]["role_tag"] == "role" and info["tags"]["system_tag"] == "system"


@pytest.mark.parametrize(("stand", "template"), [("smollm2", "smollm2"), ("qwen2", "qwen"), ("llama3", "llama3"),
                                                 ("gemma2", "gemma"), ("gemma3", "gemma3"), ("phi3", "phi")])
def test_llamafactory_gets_the_template_of_the_models_chat_format(bench, stand, template, tmp_path):
    from family_models import STANDS, build_model_dir

    assert bench.llamafactory_template(str(build_model_dir(STANDS[stand], tmp_path / "m"))) == template


def test_any_conversation_format_becomes_the_same_messages_for_every_setup(bench, tmp_path):
    alpaca = [{"instruction": "Name a colour.", "input": "Pick one.", "output": "Blue.", "system": "Be brief."},
              {"instruction": "Count to two.", "output": "1, 2."}]
    sharegpt = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"},
                                   {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "See you."}]}]
    (tmp_path / "a.json").write_text(json.dumps(alpaca))
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sharegpt))
    assert bench.write_subset(str(tmp_path / "a.json"), 1, tmp_path / "out.jsonl") == 1
    [record] = bench.read_records(tmp_path / "out.jsonl")
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    assert "Name a colour." in record["messages"][1]["content"] and "Pick one." in record["messages"][1]["content"]
    assert bench.write_subset(str(tmp_path / "s.jsonl"), 128, tmp_path / "out.jsonl") == 1
    assert [m["content"] for m in bench.read_records(tmp_path / "out.jsonl")[0]["messages"]] == [
        "Hi", "Hello!", "Bye", "See you."]


def test_text_data_is_refused_with_the_reason(bench, tmp_path):
    (tmp_path / "t.jsonl").write_text(json.dumps({"text": "plain text to continue"}) + "\n")
    with pytest.raises(SystemExit, match="expected a conversation"):
        bench.write_subset(str(tmp_path / "t.jsonl"), 8, tmp_path / "out.jsonl")


def test_the_baselines_train_every_assistant_turn_and_nothing_else(bench, tiny_tokenizer):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "See you."}]
    ids, labels = bench.chat_tokens(tiny_tokenizer, messages)
    trained = tiny_tokenizer.decode([token for token, label in zip(ids, labels) if label != -100])
    assert "Hello!" in trained and "See you." in trained and "Hi" not in trained and "Bye" not in trained
    row = bench.tokenize_padded(tiny_tokenizer, {"messages": messages}, 160)
    assert len(row["input_ids"]) == 160 and sum(row["attention_mask"]) == len(ids)
    assert row["labels"][:len(ids)] == labels and set(row["labels"][len(ids):]) == {-100}


def test_rows_compare_with_the_careful_script_of_their_own_method(bench):
    row = lambda wall, rss, method="lora": {"tokens_per_s": 100.0, "wall_s": wall, "peak_rss_gb": rss,
                                            "train_loss": 1.0, "method": method}
    results = {"tunelab": row(50, 2), "hf_careful": row(100, 8), "llamafactory": row(200, 4),
               "tunelab full": row(90, 6, "full"), "hf_careful full": row(60, 12, "full"),
               "hf_tutorial": {"error": "exit status 1", "wall_s": 3.0, "method": "lora"}}
    lines = bench.table(results, rate=400e9, n_params=100_000_000).splitlines()
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:]}
    assert cells["tunelab"][5:9] == ["2.00x", "0.25x", "4.00x", "–"]
    assert cells["tunelab full"][5:7] == ["0.67x", "0.50x"]
    # % of ceiling: 100 tokens/s of 400e9 / (4 x 1e8) = 1000 for LoRA, of 400e9 / (6 x 1e8) for full
    assert cells["tunelab"][4] == "10.0%" and cells["tunelab full"][4] == "15.0%"
    assert "failed" in cells["hf_tutorial"][0]


def test_repeated_rounds_report_each_setups_median_wall_run(bench):
    run = lambda wall: {"tokens_per_s": 1000 / wall, "wall_s": wall, "peak_rss_gb": 1.0, "train_loss": 1.0,
                        "method": "lora"}
    rounds = [{"model_matmul_flops": rate, "results": {"tunelab": run(t), "hf_careful": run(c)}}
              for rate, t, c in [(400e9, 90.0, 150.0), (350e9, 80.0, 149.0), (420e9, 85.0, 151.0)]]
    results, rate = bench.representative(rounds)
    assert (results["tunelab"]["wall_s"], results["hf_careful"]["wall_s"], rate) == (85.0, 150.0, 400e9)
    # of two rounds, the faster run of each setup and the higher rate (the ceiling is not lowered by a slow round)
    results, rate = bench.representative(rounds[:2])
    assert (results["tunelab"]["wall_s"], results["hf_careful"]["wall_s"], rate) == (80.0, 149.0, 400e9)
    assert "tunelab 90.0, 80.0, 85.0; hf_careful 150.0, 149.0, 151.0" in bench.spread(rounds)
    assert bench.spread(rounds[:1]) == ""


def test_a_setup_that_fails_in_any_round_is_reported_failed(bench):
    ok = {"tokens_per_s": 10.0, "wall_s": 5.0, "peak_rss_gb": 1.0, "train_loss": 1.0, "method": "lora"}
    failed = {"error": "exit status 1", "wall_s": 1.0, "method": "lora"}
    rounds = [{"model_matmul_flops": 1e9, "results": {"tunelab": ok}},
              {"model_matmul_flops": 1e9, "results": {"tunelab": failed}}]
    assert bench.representative(rounds)[0]["tunelab"] is failed


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_repeats_must_be_a_positive_whole_number(bench, value, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--repeats", value])
    assert "--repeats: expected a whole number of 1 or more" in capsys.readouterr().err
