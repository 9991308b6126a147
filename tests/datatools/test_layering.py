"""Layers point one way: the data library and the config never import the data tools, and the specs import
nothing of tunelab's training code."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "tunelab"


def imported(folder: Path) -> set[tuple[str, str]]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add((path.name, node.module))
            elif isinstance(node, ast.Import):
                found |= {(path.name, alias.name) for alias in node.names}
    return found


@pytest.mark.parametrize("lower, upper", [("data", "tunelab.datatools"), ("config", "tunelab.datatools"),
                                          ("specs", "tunelab.methods"), ("specs", "tunelab.stages"),
                                          ("specs", "tunelab.continual"), ("specs", "torch"),
                                          ("config", "tunelab.methods"), ("config", "tunelab.stages")])
def test_a_lower_layer_never_imports_an_upper_one(lower, upper):
    wrong = sorted(f"{name}: {module}" for name, module in imported(PACKAGE / lower)
                   if module == upper or module.startswith(upper + "."))
    assert not wrong, f"tunelab/{lower} imports {upper}: {wrong}"
