"""The main job on the real default model (minutes): `make test-slow`.

Held-out identity questions and general probes are committed files that share no text with the
training data (tests/test_builtin_data.py checks that); answers are graded by keywords.
"""
import pytest


@pytest.mark.slow
def test_demo_teaches_the_new_name_and_keeps_general_knowledge(tmp_path):
    from tunelab.demo import run_demo

    demo = run_demo([f"output.dir={tmp_path / 'identity'}"])
    identity_ok = sum(r.tuned_ok for r in demo.identity)
    general_ok = sum(r.tuned_ok for r in demo.general)
    base_general_ok = sum(r.base_ok for r in demo.general)
    assert sum(r.base_ok for r in demo.identity) == 0  # the base model does not know the new name
    assert identity_ok >= 8, [r.tuned for r in demo.identity]
    assert general_ok >= max(6, base_general_ok - 2), [r.tuned for r in demo.general]
    assert demo.total_s < 600
