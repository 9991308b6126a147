"""What `continual.kl_top_k` costs in KL accuracy: the exact KL(base || tuned) against the top-k one that
continual.method kl computes from its cached base log-probs, on a fine-tuned run's reference rows.

    .venv/bin/python bench/kl_truncation.py runs/forgetting-none            # k = 8 16 32 64 128
    .venv/bin/python bench/kl_truncation.py RUN --k 32 --rows 64

RUN is any LoRA run (its adapter switched off gives the base). The rows are the run's continual.reference_data
(builtin:instructions when it has no continual section), tokenized as the KL term tokenizes them. Prints, per k,
the mean KL over all answer positions, its ratio to the exact mean, and the share of the base's probability mass
the k tokens hold. The top-k KL never exceeds the exact one (it is the KL of the distributions coarsened to the k
tokens plus "everything else").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from tunelab.config import ContinualConfig  # noqa: E402
from tunelab.continual.kl import kl_full, kl_top_k  # noqa: E402
from tunelab.continual.reference import reference_examples, tokenized  # noqa: E402
from tunelab.continual.targets import answer_logits, top_k  # noqa: E402
from tunelab.runs.loading import load_any  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a LoRA run directory")
    parser.add_argument("--k", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--rows", type=int, default=128, help="reference rows scored")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    loaded = load_any(args.run)
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    if loaded.run is None or loaded.method is None:
        parser.error(f"{args.run}: not a run with an adapter (the base is the run with its adapter switched off)")
    config = loaded.run.config
    rows = tokenized(reference_examples(config.continual or ContinualConfig()), tokenizer, config.train.max_length,
                     args.rows, config.train.seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    exact, truncated, mass, positions = 0.0, {k: 0.0 for k in args.k}, {k: 0.0 for k in args.k}, 0
    with torch.no_grad():
        for start in range(0, len(rows), args.batch_size):
            chunk = rows[start : start + args.batch_size]
            tuned = answer_logits(model, chunk, pad)
            with model.disable_adapter():
                base = answer_logits(model, chunk, pad)
            count = base.shape[0]
            positions += count
            exact += float(kl_full(base, tuned)) * count
            for k in args.k:
                ids, logp, rest = top_k(base, k)
                truncated[k] += float(kl_top_k(ids, logp, rest, tuned)) * count
                mass[k] += float(logp.exp().sum(-1).sum())
    exact /= positions
    print(f"{len(rows)} reference rows, {positions} answer positions; exact KL(base || tuned) = {exact:.5f} nats\n")
    print("| k | top-k KL (nats) | top-k / exact | base mass in top k |")
    print("|---|---|---|---|")
    for k in args.k:
        value = truncated[k] / positions
        print(f"| {k} | {value:.5f} | {value / exact:.3f} | {mass[k] / positions:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
