"""The throughput benchmark's setups stay runnable: each method's tunelab config validates, LLaMA-Factory's
config names the same work, and the table compares each row with the careful script doing the same method.
Nothing here trains or times anything (the benchmark itself is run by hand, see bench/README.md)."""
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
    args = bench.parse_args([])
    command, out = bench.llamafactory_command(args, tmp_path / "data.json", tmp_path, "/models/m", "bf16")
    config = yaml.safe_load(Path(command[-1]).read_text())
    assert command[:2] == ["/venv/bin/llamafactory-cli", "train"]
    assert (config["lora_rank"], config["lora_alpha"], config["lora_dropout"]) == (8, 16, 0.0)
    assert config["cutoff_len"] == args.max_length and config["per_device_train_batch_size"] == args.batch_size
    assert config["bf16"] and config["use_cpu"] and config["finetuning_type"] == "lora"
    assert (tmp_path / "llamafactory_data" / "dataset_info.json").is_file()


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
