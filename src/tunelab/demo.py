"""`make demo`: fine-tune the built-in model on the identity set with LoRA on the CPU, then show the
base and tuned answers side by side for held-out identity questions and general-knowledge probes."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "identity_lora.yaml"


@dataclass
class DemoResult:
    run_dir: Path
    summary: dict
    identity: list      # ProbeResult per held-out identity question
    general: list       # ProbeResult per general-knowledge probe
    train_s: float
    total_s: float


def run_demo(overrides: list[str] = ()) -> DemoResult:
    from tunelab.config import load_config
    from tunelab.eval.after_training import write_run_report
    from tunelab.eval.probes import load_probe_set, run_probes, save_probe_sets
    from tunelab.models import detect_device
    from tunelab.runs import load_any
    from tunelab.serve import ChatEngine
    from tunelab.train import train

    start = time.perf_counter()
    result = train(load_config(EXAMPLE, ["output.overwrite=true", *overrides]))
    train_s = time.perf_counter() - start
    engine = ChatEngine(load_any(str(result.run_dir)), detect_device())
    identity = run_probes(engine, load_probe_set("identity_heldout"))
    general = run_probes(engine, load_probe_set("probes"))
    save_probe_sets(result.run_dir, {"held-out identity questions": identity, "general-knowledge probes": general})
    write_run_report(result.run_dir)  # now with both tables
    return DemoResult(result.run_dir, result.summary, identity, general, train_s, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    from tunelab.cli.main import _quiet_libraries

    _quiet_libraries("demo")  # before anything imports torch, peft or bitsandbytes (whose import logs a notice)
    from tunelab.eval.probes import format_side_by_side

    demo = run_demo(argv if argv is not None else sys.argv[1:])
    print()
    print(format_side_by_side("held-out identity questions", demo.identity))
    print()
    print(format_side_by_side("general-knowledge probes", demo.general))
    print(f"\ntraining {demo.train_s:.0f} s at {demo.summary['train_tokens_per_s']:.0f} tokens/s; "
          f"total {demo.total_s:.0f} s; run in {demo.run_dir}")
    print(f"report (curves, metrics, base vs tuned samples): {demo.run_dir / 'report.html'}")
    print(f"talk to it: .venv/bin/tunelab chat --model {demo.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
