"""Evaluate a model or run on a data set: BLEU, ROUGE, perplexity, exact match, accuracy/F1 (eval.json)."""
from __future__ import annotations

import argparse
from pathlib import Path

from tunelab.errors import TunelabError


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="run directory, checkpoint-N, model dir, .gguf or built-in name")
    parser.add_argument("--data", required=True, help="data file, LLaMA-Factory data dir or builtin:NAME (e.g. probes)")
    parser.add_argument("--dataset", default=None, help="dataset name(s) in the data dir's dataset_info.json")
    parser.add_argument("--metrics", default="bleu,rouge,perplexity",
                        help="comma-separated: bleu, rouge, perplexity, exact_match, contains, accuracy, f1")
    parser.add_argument("--output", required=True, help="directory for eval.json and predictions.jsonl")
    parser.add_argument("--compare-base", action="store_true", help="also score the base model and print the delta")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024, help="longest conversation scored for perplexity")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="auto: fp32 on any CPU (scores do not depend on whether it has native bf16), "
                             "bf16 on a GPU that supports it")


def run(args: argparse.Namespace) -> int:
    from tunelab.cli.startup import loading_libraries

    with loading_libraries():  # torch, transformers, peft
        from tunelab.eval.metrics import check_metrics
        from tunelab.eval.output import RESULT, format_metrics
        from tunelab.eval.runner import EvalSettings, evaluate_data
        from tunelab.eval.subject import Subject
        from tunelab.models import detect_device, eval_dtype
        from tunelab.runs import load_any

    metrics = check_metrics([name.strip() for name in args.metrics.split(",") if name.strip()])
    for flag in ("max_new_tokens", "batch_size", "max_length", "limit"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise TunelabError(f"--{flag.replace('_', '-')}: must be a positive number, got {value}")
    settings = EvalSettings(metrics, args.max_new_tokens, args.batch_size, args.compare_base, args.limit,
                            args.max_length)
    device = detect_device()
    subject = Subject(load_any(args.model, eval_dtype(args.dtype, device)), device)
    record = evaluate_data(subject, args.data, args.dataset, settings, Path(args.output))
    print(format_metrics(record))
    print(f"wrote {Path(args.output) / RESULT} ({record['examples']} examples, {record['seconds']:.1f} s)")
    return 0
