"""A config with a mistake in its keys is refused before torch, transformers, peft or trl are imported (they take
seconds to import; the answer comes in a fraction of one)."""
import subprocess
import sys

PROBE = """
import sys
from tunelab.cli.main import main
code = main(["train", sys.argv[1]])
print(code, sorted(m for m in ("torch", "transformers", "peft", "trl") if m in sys.modules))
"""


def test_an_unknown_key_is_refused_without_loading_the_libraries(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  path: x.json\ntrain:\n  lr_rate: 0.1\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", PROBE, str(bad)], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "2 []", done.stdout + done.stderr
    assert "train.lr_rate" in done.stderr and "Traceback" not in done.stderr
