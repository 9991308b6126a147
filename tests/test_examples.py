"""Every shipped example config validates and points at data that loads."""
from pathlib import Path

import pytest

from tunelab.config import load_config
from tunelab.config.loader import is_sequence, load_sequence
from tunelab.data.loading import load_examples

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").rglob("*.yaml"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_validates_and_its_data_loads(path):
    if is_sequence(path):  # a sequence names task configs, each an example of its own
        tasks = load_sequence(path).continual.tasks
        assert tasks and all(Path(task).is_file() for task in tasks)
        return
    config = load_config(path)
    examples = load_examples(config.data.path, config.data.dataset, config.data.format)
    assert len(examples) >= 10
