"""data.mix: sources drawn by weight (seeded), each source without replacement until it runs out, LLaMA-Factory's
interleave_under/over as mix_stop first_exhausted/all_exhausted, validation held out per source, the draw in
summary.json; train.max_samples caps every source."""
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tunelab.config import load_config
from tunelab.data.loading import load_examples
from tunelab.data.mixture import draw, held_out, mix_rows, take
from tunelab.errors import TunelabError
from tunelab.train import train

LLAMAFACTORY = Path(__file__).resolve().parents[1] / "assets" / "llamafactory"


def _counts(picks) -> Counter:
    return Counter(source for source, _ in picks)


def test_a_70_30_mixture_draws_70_30():
    counts = _counts(draw([400, 900], [0.7, 0.3], seed=42, size=1000))
    assert sum(counts.values()) == 1000
    assert abs(counts[0] / 1000 - 0.7) <= 0.03 and abs(counts[1] / 1000 - 0.3) <= 0.03


def test_weights_need_not_sum_to_one():
    assert draw([50, 50], [7, 3], seed=1, size=200) == draw([50, 50], [0.7, 0.3], seed=1, size=200)


def test_the_same_seed_draws_the_same_and_another_seed_does_not():
    assert draw([30, 20], [1, 1], seed=5, size=100) == draw([30, 20], [1, 1], seed=5, size=100)
    assert draw([30, 20], [1, 1], seed=5, size=100) != draw([30, 20], [1, 1], seed=6, size=100)


def test_a_source_repeats_only_once_it_has_been_used_up():
    picks = [index for source, index in draw([10, 1000], [0.5, 0.5], seed=3, size=200) if source == 0]
    assert len(picks) > 50
    for start in range(0, len(picks) - 9, 10):  # each pass over the small source shows each example once
        assert sorted(picks[start:start + 10]) == list(range(10))
    big = [index for source, index in draw([10, 1000], [0.5, 0.5], seed=3, size=200) if source == 1]
    assert len(set(big)) == len(big)  # the large source is never repeated at its share


def test_default_size_is_the_sum_of_the_sources():
    assert len(draw([12, 30], [1, 1], seed=0)) == 42


def test_first_exhausted_stops_when_a_source_runs_out():
    picks = draw([10, 1000], [1, 1], seed=0, stop="first_exhausted")
    counts = _counts(picks)
    assert counts[0] == 10 and picks[-1][0] == 0  # the draw that used up the small source is the last
    assert sorted(index for source, index in picks if source == 0) == list(range(10))


def test_all_exhausted_goes_on_until_every_source_has_run_out():
    picks = draw([10, 100], [1, 1], seed=0, stop="all_exhausted")
    counts = _counts(picks)
    assert counts[1] == 100 and picks[-1][0] == 1 and counts[0] > 10  # the small source was oversampled
    assert {index for source, index in picks if source == 1} == set(range(100))


def test_concat_takes_every_row_of_every_source_once():
    assert draw([2, 3], [1, 1], seed=0, stop="concat") == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]


def test_take_gives_each_item_once_before_any_repeats():
    items = list("abcde")
    taken = take(items, 12, seed=1)
    assert sorted(taken[:5]) == items and sorted(taken[5:10]) == items and len(taken) == 12


def test_validation_is_held_out_of_each_source_before_drawing():
    sources = [SimpleNamespace(label="a", weight=1.0), SimpleNamespace(label="b", weight=3.0)]
    mixture = mix_rows([list(range(10)), list(range(100, 130))], sources, "size", 200, 0.2, seed=0)
    assert len(mixture.validation) == 2 + 6 and len(mixture.train) == 200
    assert not set(mixture.validation) & set(mixture.train)  # repeats never reach validation
    assert mixture.report["a"]["available"] == 8 and mixture.report["b"]["validation"] == 6
    assert sum(item["drawn"] for item in mixture.report.values()) == 200
    assert mixture.report["b"]["weight"] == 0.75


def test_a_validation_count_is_shared_in_proportion():
    assert held_out(5, [10, 30, 10]) == [1, 3, 1]
    assert held_out(0.1, [10, 30]) == [0.1, 0.1]


def _write(path: Path, answer: str, count: int) -> Path:
    path.write_text("".join(json.dumps({"instruction": f"Question {i} for {answer}?", "output": answer}) + "\n"
                            for i in range(count)), encoding="utf-8")
    return path


def _mix_config(tmp_path, tiny_model_dir, write_config, mix, name="mix", data=None, **train):
    path = write_config(tiny_model_dir, "unused", name, train={"max_steps": 1, **train})
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["data"] = {"mix": mix, **(data or {})}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_the_drawn_counts_are_in_summary_json(tmp_path, tiny_model_dir, write_config):
    big, small = _write(tmp_path / "big.jsonl", "Blue.", 40), _write(tmp_path / "small.jsonl", "Red.", 8)
    mix = [{"path": str(big), "weight": 7}, {"path": str(small), "weight": 3}]
    config = load_config(_mix_config(tmp_path, tiny_model_dir, write_config, mix, data={"mix_size": 1000,
                                                                                        "val_size": 0.25}))
    result = train(config)
    written = json.loads((result.run_dir / "summary.json").read_text())["data_mix"]
    assert written == result.summary["data_mix"]
    assert set(written) == {str(big), str(small)}
    assert written[str(big)]["available"] == 30 and written[str(big)]["validation"] == 10
    assert written[str(small)]["available"] == 6 and written[str(small)]["validation"] == 2
    assert written[str(big)]["drawn"] + written[str(small)]["drawn"] == 1000
    assert abs(written[str(big)]["drawn"] / 1000 - 0.7) <= 0.03  # 70/30 over 1,000 draws, as run by train()
    assert written[str(big)]["weight"] == pytest.approx(0.7) and written[str(small)]["weight"] == pytest.approx(0.3)
    assert result.summary["examples"]["kept"] == 48  # every example tokenized once, however often it is drawn


def test_llamafactory_datasets_mix_by_name_and_max_samples_caps_each_source(tmp_path, tiny_model_dir,
                                                                            write_config):
    mix = [{"path": str(LLAMAFACTORY), "dataset": "identity", "weight": 0.5},  # 3 examples
           {"path": str(LLAMAFACTORY), "dataset": "alpaca_en_demo", "weight": 0.5}]  # 4 examples
    config = load_config(_mix_config(tmp_path, tiny_model_dir, write_config, mix, "lf",
                                     data={"mix_stop": "all_exhausted"}, max_samples=2, max_length=2048))
    result = train(config)
    drawn = result.summary["data_mix"]
    assert {item["available"] for item in drawn.values()} == {2}  # each source cut to its first 2
    assert all(item["drawn"] >= 2 for item in drawn.values())  # all_exhausted: every source seen whole
    assert result.summary["examples"]["kept"] == 4


def test_max_samples_takes_the_first_examples_of_each_dataset_name():
    both = load_examples(str(LLAMAFACTORY), "identity,alpaca_en_demo", max_samples=3)
    assert len(both) == 6
    assert both[:3] == load_examples(str(LLAMAFACTORY), "identity")[:3]
    first2 = load_examples(str(LLAMAFACTORY), "alpaca_en_first2", max_samples=5)  # num_samples: 2 still wins
    assert len(first2) == 2


def test_max_samples_caps_a_single_file(tmp_path):
    data = _write(tmp_path / "d.jsonl", "Yes.", 10)
    examples = load_examples(str(data), max_samples=3)
    assert [e["source"] for e in examples] == [f"{data}:1", f"{data}:2", f"{data}:3"]


@pytest.mark.parametrize("data, message", [
    ({"path": "x.json", "mix": ["a.json"]}, "data: data.path and data.mix: give one of them"),
    ({}, "data.path: required key is missing"),
    ({"mix": [{"path": "a.json", "weight": 0}]}, r"data.mix.0.weight: Input should be greater than 0"),
    ({"mix": [{"path": "a.json", "wieght": 2}]}, r"data.mix.0.wieght: unknown key"),
    ({"mix": [{"weight": 2}]}, r"data.mix.0.path: required key is missing"),
    ({"mix": ["a.json"], "dataset": "x"}, r"data.dataset: with data.mix give it to each source"),
    ({"mix": ["a.json"], "mix_stop": "first_exhausted", "mix_size": 10},
     "data.mix_size: data.mix_stop 'first_exhausted' decides when drawing stops"),
    ({"mix": ["a.json"], "mix_stop": "sometimes"}, r"data.mix_stop: Input should be 'size', 'first_exhausted'"),
    ({"mix": [{"path": "a.json", "weight": 2}], "mix_stop": "concat"}, r"data.mix\[\].weight: .* concat takes every"),
    ({"path": "x.json", "mix_size": 10}, "data.mix_size only applies to a data.mix"),
    ({"mix": ["a.json"], "streaming": True}, "data.streaming: a data.mix is drawn from examples in memory"),
])
def test_a_bad_mix_is_one_clear_error_naming_the_key(tmp_path, data, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": data, "train": {"max_steps": 2}}), encoding="utf-8")
    with pytest.raises(TunelabError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_a_source_written_as_its_path_has_weight_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"mix": ["a.json", {"path": "b.json", "weight": 3}]}}), encoding="utf-8")
    assert [(s.path, s.weight) for s in load_config(path).data.mix] == [("a.json", 1.0), ("b.json", 3.0)]


def test_replay_with_a_mix_is_refused_with_what_to_do_instead(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"mix": ["a.json"]}, "continual": {"method": "replay"}}),
                    encoding="utf-8")
    with pytest.raises(TunelabError, match="add continual.reference_data to data.mix as a source"):
        load_config(path)
