"""`tunelab methods`: every registered method with its keys, and trainable counts on a model."""
from tunelab.cli.main import main
from tunelab.methods import METHODS


def test_lists_every_method_with_its_keys(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in METHODS:
        assert f"| {name} |" in out
    assert "trainable_layers, trainable_modules" in out


def test_counts_trainable_parameters_on_a_model(capsys, tiny_model_dir):
    assert main(["methods", "--model", str(tiny_model_dir)]) == 0
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == set(METHODS)
    assert rows["full"].rstrip().endswith("100.00% |")
    lora = int(rows["lora"].split("|")[4].replace(",", ""))
    full = int(rows["full"].split("|")[4].replace(",", ""))
    assert 0 < lora < full
