"""The specs are the one place that says what a method, stage or penalty is: each has an implementation under
the same name, the implementations take their flags from it and set none themselves, and the rules read
only the specs."""
import ast
from pathlib import Path

import pytest

from tunelab.continual import PENALTIES
from tunelab.methods import METHODS
from tunelab.specs.base import MethodSpec, PenaltySpec, StageSpec, capability_names
from tunelab.specs.continual import PENALTY_SPECS
from tunelab.specs.methods import METHOD_SPECS
from tunelab.specs.stages import STAGE_SPECS
from tunelab.stages import STAGES

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "tunelab"
PAIRS = [(METHOD_SPECS, METHODS, MethodSpec, "methods"), (STAGE_SPECS, STAGES, StageSpec, "stages"),
         (PENALTY_SPECS, PENALTIES, PenaltySpec, "continual")]


@pytest.mark.parametrize("specs, implementations, spec_class, package", PAIRS, ids=lambda x: getattr(x, "kind", ""))
def test_every_spec_is_implemented_and_every_implementation_has_its_spec(specs, implementations, spec_class,
                                                                          package):
    assert set(specs) == set(implementations)
    for name, cls in implementations.items():
        assert cls.spec is specs[name]
        for key in capability_names(spec_class):
            expected = getattr(specs[name].caps, key) if hasattr(specs[name].caps, key) else getattr(specs[name], key)
            assert getattr(cls, key) == expected, (name, key)


@pytest.mark.parametrize("specs, implementations, spec_class, package", PAIRS, ids=lambda x: getattr(x, "kind", ""))
def test_no_implementation_declares_a_flag_of_its_own(specs, implementations, spec_class, package):
    """A flag written in a class body would be overwritten at registration (or, on a base class, silently differ
    from the spec's default): they live in tunelab/specs only."""
    names = capability_names(spec_class) - {"name"}
    found = []
    for path in sorted((PACKAGE / package).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    targets = item.targets if isinstance(item, ast.Assign) else \
                        [item.target] if isinstance(item, ast.AnnAssign) else []
                    found += [f"{path.name}:{node.name}.{t.id}" for t in targets
                              if isinstance(t, ast.Name) and t.id in names]
    assert not found, f"flags set outside tunelab/specs: {found}"


def test_a_class_registered_without_a_spec_is_refused():
    from tunelab.methods.base import Method, register

    with pytest.raises(LookupError, match="'no-such-method' is implemented but has no spec"):
        register("no-such-method")(type("Orphan", (Method,), {}))
    assert "no-such-method" not in METHODS


def test_unregistered_subclasses_get_the_spec_defaults():
    from tunelab.methods.base import Method
    from tunelab.specs.base import MethodCaps

    subclass = type("Custom", (Method,), {})
    assert subclass.supports_packing is MethodCaps().supports_packing and subclass.options == ()
