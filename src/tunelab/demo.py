"""`make demo`: fine-tune the built-in model on the identity set with LoRA on the CPU, then show the
base and tuned answers side by side for held-out identity questions and general-knowledge probes."""
from __future__ import annotations

import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "identity_lora.yaml"


def main(argv: list[str] | None = None) -> int:
    from tunelab.cli.main import _quiet_libraries
    from tunelab.config import load_config
    from tunelab.eval.probes import format_side_by_side, load_probe_set, run_probes
    from tunelab.models import detect_device
    from tunelab.runs import load_any
    from tunelab.serve import ChatEngine
    from tunelab.train import train

    _quiet_libraries()
    overrides = ["output.overwrite=true", *(argv if argv is not None else sys.argv[1:])]
    start = time.perf_counter()
    result = train(load_config(EXAMPLE, overrides))
    trained_s = time.perf_counter() - start
    engine = ChatEngine(load_any(str(result.run_dir)), detect_device())
    identity = run_probes(engine, load_probe_set("identity_heldout"))
    general = run_probes(engine, load_probe_set("probes"))
    print()
    print(format_side_by_side("held-out identity questions", identity))
    print()
    print(format_side_by_side("general-knowledge probes", general))
    print(f"\ntraining {trained_s:.0f} s at {result.summary['train_tokens_per_s']:.0f} tokens/s; "
          f"total {time.perf_counter() - start:.0f} s; run in {result.run_dir}")
    print(f"try it: .venv/bin/tunelab chat --model {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
