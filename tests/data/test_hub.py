"""data.path: hf:ORG/NAME loads a Hub data set with data.split and data.subset; offline, one line says what to do.
Nothing here reaches the network: the hub is offline (HF_HUB_OFFLINE=1, sockets refused) or `datasets` is a fake."""
import socket
import sys
import types

import pytest
import yaml

from tunelab.config import load_config
from tunelab.data.loading import load_examples
from tunelab.errors import TunelabError


@pytest.fixture()
def no_network(monkeypatch, tmp_path):
    """Offline as a user sets it, an empty HF cache, and every socket refused in case anything still tries."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    for module in ("datasets.config", "huggingface_hub.constants"):  # read at import time: imported before us?
        if module in sys.modules:
            monkeypatch.setattr(sys.modules[module], "HF_HUB_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise OSError("the network is off in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return tmp_path / "hf" / "datasets"


def fake_datasets(monkeypatch, load):
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load))


def test_offline_names_hf_hub_offline_the_cache_and_what_to_do(no_network):
    with pytest.raises(TunelabError) as err:
        load_examples("hf:nobody/no-such-data")
    message = str(err.value)
    assert message.startswith("hf:nobody/no-such-data: could not load 'nobody/no-such-data' from the Hugging Face Hub")
    assert "HF_HUB_OFFLINE is set" in message and str(no_network) in message
    assert "load it once with network access" in message and "set data.path to it" in message
    assert "\n" not in message


def test_an_unreachable_hub_also_points_at_the_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    fake_datasets(monkeypatch, unreachable)
    with pytest.raises(TunelabError) as err:
        load_examples("hf:org/data")
    message = str(err.value)
    assert "(ConnectionError: Name or service not known); the hub could not be reached" in message
    assert f"cached in {tmp_path / 'cache'}, set HF_HUB_OFFLINE=1" in message


def test_split_subset_and_max_samples_reach_load_dataset(monkeypatch):
    calls = []

    def load(repo, name=None, split=None):
        calls.append((repo, name, split))
        return [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(10)]

    fake_datasets(monkeypatch, load)
    examples = load_examples("hf:org/qa", split="validation", subset="en", max_samples=3)
    assert calls == [("org/qa", "en", "validation")]
    assert [e["source"] for e in examples] == ["hf://org/qa:row 1", "hf://org/qa:row 2", "hf://org/qa:row 3"]
    assert examples[0]["messages"][-1] == {"role": "assistant", "content": "a0"}  # alpaca, detected


def test_a_dataset_name_is_refused_for_a_hub_path(monkeypatch):
    fake_datasets(monkeypatch, lambda *a, **k: [])
    with pytest.raises(TunelabError, match="hf:org/qa: a dataset name .* only applies to a directory"):
        load_examples("hf:org/qa", "train")


@pytest.mark.parametrize("data, message", [
    ({"path": "x.json", "subset": "en"}, r"data.subset only applies to a hub data set \(data.path: hf:ORG/NAME\)"),
    ({"path": "x.json", "split": "test"}, "data.split only applies to a hub data set"),
    ({"mix": [{"path": "x.json", "split": "test"}]}, r"data.mix\[\].split only applies to a hub data set"),
])
def test_split_and_subset_are_for_hub_paths_only(tmp_path, data, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": data}), encoding="utf-8")
    with pytest.raises(TunelabError, match=message):
        load_config(path)


def test_a_hub_data_set_can_be_a_mix_source(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"mix": [{"path": "hf:org/qa", "subset": "en", "split": "test"},
                                                     "local.jsonl"]}}), encoding="utf-8")
    source = load_config(path).data.mix[0]
    assert (source.path, source.subset, source.split, source.label) == ("hf:org/qa", "en", "test", "hf:org/qa")
