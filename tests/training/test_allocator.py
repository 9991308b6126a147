"""glibc set for training: a large tensor freed and allocated again reuses the heap instead of faulting
fresh zeroed pages in (counted with getrusage's minor faults, not timed)."""
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    from tunelab.training.allocator import tune_for_training
    applied = tune_for_training() if sys.argv[1] == "tuned" else False
    def faults_of_one_step():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MB: above glibc's largest mmap threshold
        del x
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults_of_one_step()
    print(applied, tune_for_training() if applied else "-", min(faults_of_one_step() for _ in range(3)))
""")


def _run(mode: str, **env) -> list[str]:
    import os

    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return out.stdout.split()


def test_freed_tensors_are_reused_without_page_faults():
    applied, again, tuned = _run("tuned")
    _, _, default = _run("default")
    assert applied == "True" and again == "True"   # once per process; asking again changes nothing
    pages = (64 << 20) // 4096
    assert int(default) >= pages // 2              # glibc's default: a fresh mmap every time
    assert int(tuned) < pages // 10                # tuned: the heap's memory again


def test_the_switch_leaves_glibc_alone():
    applied, _, faults = _run("tuned", TUNELAB_MALLOC="system")
    assert applied == "False" and int(faults) >= (64 << 20) // 4096 // 2
