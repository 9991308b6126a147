"""Replay takes its reference examples as a data.mix takes a source's rows: seeded, each once before any repeats,
the task's own examples all kept once."""
from types import SimpleNamespace

import pytest

from tunelab.continual.replay import Replay
from tunelab.errors import TunelabError


def _examples(prefix: str, count: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"{prefix} {i}"}, {"role": "assistant", "content": "ok"}],
             "source": f"{prefix}.json:{i}"} for i in range(count)]


def _replay(ratio: float) -> Replay:
    return Replay(None, SimpleNamespace(replay_ratio=ratio, reference_data="old.json"))


def test_own_examples_stay_once_and_the_share_is_replayed():
    own, old = _examples("new", 12), _examples("old", 40)
    replay = _replay(0.25)
    mixed = replay.examples(own, old, seed=1)
    assert mixed[:12] == own and len(mixed) == 16 and replay.summary() == {"replayed_examples": 4}
    assert all(example["source"].startswith("replay old.json:") for example in mixed[12:])


def test_a_small_reference_is_used_whole_before_it_repeats():
    own, old = _examples("new", 30), _examples("old", 4)
    replayed = _replay(0.5).examples(own, old, seed=3)[30:]
    assert len(replayed) == 30
    for start in range(0, 28, 4):  # every pass shows each of the 4 old examples once
        assert sorted(e["source"] for e in replayed[start:start + 4]) == [f"replay old.json:{i}" for i in range(4)]


def test_the_same_seed_replays_the_same_examples():
    own, old = _examples("new", 10), _examples("old", 50)
    assert _replay(0.3).examples(own, old, seed=7) == _replay(0.3).examples(own, old, seed=7)
    assert _replay(0.3).examples(own, old, seed=7) != _replay(0.3).examples(own, old, seed=8)


def test_reference_data_of_another_kind_is_refused():
    with pytest.raises(TunelabError, match="replay needs examples like the training data"):
        _replay(0.2).examples(_examples("new", 4), [{"text": "plain", "source": "t.txt:1"}], seed=0)
