"""The bench/ scripts are not a package: the `bench` fixture loads the script a test module names in
BENCH_NAME (bench/<BENCH_NAME>.py) by path."""
import importlib.util
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench(request):
    name = request.module.BENCH_NAME
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
