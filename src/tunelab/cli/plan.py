"""Estimate parameters, memory, tokens and time of a training config before running it."""
from __future__ import annotations

import argparse
import json
import math


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.batch_size=4")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")


def run(args: argparse.Namespace) -> int:
    from tunelab.config import load_config
    from tunelab.plan import plan

    config = load_config(args.config, args.overrides)
    result = plan(config)
    print(json.dumps(result.to_dict(), indent=2) if args.json else render(args.config, config, result))
    return 0


def _size(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.2f} GB"
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 1024:.1f} KB"


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "unknown"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def render(path: str, config, p) -> str:
    lines = [
        f"plan for {path}",
        f"  parameters   {p.total_params:,} total, {p.trainable_params:,} trainable "
        f"({100 * p.trainable_params / max(p.total_params, 1):.2f}%, method {config.method.name})",
        f"  data         {p.examples} examples{' (sampled from the start of the stream)' if config.data.streaming else ''}, "
        f"{p.tokens_per_epoch:,} tokens per epoch "
        f"(packing {'on' if p.packing else 'off'}); {p.steps_per_epoch} steps per epoch, {p.total_steps} in all",
        f"  memory       weights {_size(p.weights_bytes)}, gradients {_size(p.gradients_bytes)}, "
        f"optimizer ({config.train.optimizer}) {_size(p.optimizer_bytes)}",
        f"               activations {_size(p.activations_bytes)} at the largest forward "
        f"({p.peak_forward_tokens:,} tokens x {_size(p.activation_bytes_per_token)}/token; "
        f"largest step {p.peak_step_tokens:,} tokens), "
        f"loss {_size(p.loss_bytes)}, runtime {_size(p.runtime_bytes)}, other {_size(p.other_bytes)}",
        f"               estimated peak {_size(p.estimated_peak_bytes)}"
        + (f" of {_size(p.available_bytes)} available" if p.available_bytes is not None else ""),
        f"  time         {p.warmup_tokens_per_s:,.0f} tokens/s measured over a short warm-up -> "
        f"{_duration(p.epoch_seconds)} per epoch, {_duration(p.total_seconds)} for the run",
    ]
    if not p.fits:
        lines.append("warning: the estimate exceeds the free memory; try train.gradient_checkpointing=true, "
                     "a smaller train.batch_size with train.grad_accum, or a shorter train.max_length")
    return "\n".join(lines)
