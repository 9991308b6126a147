"""`tunelab data split`: deterministic with the seed, sizes as asked, files that read back."""
import argparse

import pytest

from tunelab.cli import data as data_cli
from tunelab.data.loading import load_examples
from tunelab.datatools.split import split_examples
from tunelab.errors import TunelabError


def examples(n):
    return [{"text": f"document {i}", "source": f"d.txt:{i + 1}"} for i in range(n)]


def parse(*argv):
    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser)
    return parser.parse_args([str(a) for a in argv])


@pytest.mark.parametrize("val, held", [(0.1, 2), (0.25, 5), (3, 3), (19, 19), (50, 19)])
def test_sizes_follow_the_fraction_or_count(val, held):
    train, validation = split_examples(examples(20), val, seed=42)
    assert (len(train), len(validation)) == (20 - held, held)
    assert sorted(e["source"] for e in train + validation) == sorted(e["source"] for e in examples(20))


def test_the_same_seed_gives_the_same_split_and_another_seed_another():
    first, again, other = (split_examples(examples(50), 0.2, seed) for seed in (42, 42, 7))
    assert first == again and first != other
    train, _ = first
    assert train == sorted(train, key=lambda e: int(e["source"].rsplit(":", 1)[1]))  # data order kept


@pytest.mark.parametrize("val", [0, -0.5, 2.5])
def test_a_bad_val_is_a_clean_error(val):
    with pytest.raises(TunelabError, match="--val"):
        split_examples(examples(10), val, seed=1)


def test_split_command_writes_files_that_read_back(chat_file, tmp_path, capsys):
    out = tmp_path / "split"
    assert data_cli.run(parse("split", chat_file, "--val", 0.25, "--seed", 3, "--output", out)) == 0
    train, validation = load_examples(str(out / "train.jsonl")), load_examples(str(out / "validation.jsonl"))
    assert (len(train), len(validation)) == (9, 3)
    questions = {e["messages"][0]["content"] for e in train + validation}
    assert questions == {e["messages"][0]["content"] for e in load_examples(str(chat_file))}
    assert "9 examples" in capsys.readouterr().out
    again = tmp_path / "again"
    data_cli.run(parse("split", chat_file, "--val", 0.25, "--seed", 3, "--output", again))
    assert (again / "validation.jsonl").read_bytes() == (out / "validation.jsonl").read_bytes()
