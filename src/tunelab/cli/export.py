"""Export a run (merged) or a model directory to another format: a GGUF file for llama.cpp and Ollama."""
from __future__ import annotations

import argparse

from tunelab.export.quants import QUANTS


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="run directory, checkpoint-N or local model directory")
    parser.add_argument("--format", required=True, choices=["gguf"], help="output format")
    parser.add_argument("--output", required=True, help="file to write, e.g. model.gguf")
    parser.add_argument("--quant", choices=QUANTS, default="f16",
                        help="storage of the weight matrices (norms stay f32); default f16; k-quants need llama.cpp "
                             "(the llamacpp extra)")
    parser.add_argument("--ollama", action="store_true",
                        help="also write a checked Modelfile beside the file (ollama create NAME -f Modelfile)")


def run(args: argparse.Namespace) -> int:
    from tunelab.export import export_gguf, failed, format_table

    result = export_gguf(args.model, args.output, args.quant, ollama=args.ollama)
    size = result.path.stat().st_size / 2**20
    print(f"wrote {result.path} ({args.quant}, {size:.1f} MiB); max |logit difference| to the source "
          f"{result.max_diff:.3g}")
    print(format_table(result.checks))
    return 1 if failed(result.checks) else 0
