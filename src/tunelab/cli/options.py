"""Options shared by the commands that load a model for inference."""
from __future__ import annotations

import argparse


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="run directory, checkpoint-N, model dir, .gguf, hub id or built-in name")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)


def settings(args: argparse.Namespace):
    from tunelab.serve import GenerationSettings  # here, not at the top: it loads torch and peft for every command

    return GenerationSettings(args.max_new_tokens, args.temperature, args.top_p)


def load_engine(args: argparse.Namespace):
    from tunelab.models import detect_device, inference_dtype
    from tunelab.runs import load_any
    from tunelab.serve import ChatEngine

    device = detect_device()
    return ChatEngine(load_any(args.model, inference_dtype(args.dtype, device)), device)
