"""Evaluation memory does not grow with the number of examples: only one batch of logits ever exists.

Run in a fresh process so the peak RSS is this evaluation's own. The large set is sized so that keeping
its logits (tokens x vocab x 4 bytes) would add at least 300 MB; the measured growth must stay far below.
"""
import json
import subprocess
import sys

SCRIPT = r"""
import json, resource, sys
from pathlib import Path
from tunelab.eval.runner import EvalSettings, evaluate
from tunelab.eval.subject import Subject
from tunelab.runs import load_any

model_dir, out = sys.argv[1], Path(sys.argv[2])
subject = Subject(load_any(model_dir), "cpu")
answer = "The quick brown fox jumps over the lazy dog. " * 7
def examples(n):
    return [{"messages": [{"role": "user", "content": f"Say it ({i})"}, {"role": "assistant", "content": answer}],
             "source": f"x:{i}"} for i in range(n)]
settings = EvalSettings(["perplexity"], batch_size=16, max_length=256)
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
evaluate(subject, examples(64), settings, out / "small", {})
before = peak()
record = evaluate(subject, examples(1600), settings, out / "large", {})
print(json.dumps({"growth_mb": peak() - before, "tokens": record["perplexity_tokens"],
                  "vocab": subject.engine.model.config.vocab_size}))
"""


def test_eval_memory_does_not_grow_with_the_number_of_examples(tiny_model_dir, tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_model_dir), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    logits_mb = found["tokens"] * found["vocab"] * 4 / 2**20  # what accumulating the logits would hold
    assert logits_mb >= 300, found
    assert found["growth_mb"] < 60, found
