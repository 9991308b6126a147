"""Check that a run, a merged model directory or an exported GGUF (with its Modelfile) will chat as trained
(end-of-turn, template, stopping)."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run directory (checked as merged, in a temporary folder), model directory, "
                                      "or FILE.gguf (with the Modelfile beside it, if any)")
    parser.add_argument("--run", default=None, help="with a GGUF: the run it was exported from (its template must "
                                                    "be the file's)")


def run(args: argparse.Namespace) -> int:
    from tunelab.export import failed, format_table, run_checks
    from tunelab.runs import find_run
    from tunelab.runs.merge import merge_run

    ref = find_run(args.model)
    if args.model.endswith(".gguf"):
        results = _gguf_results(Path(args.model), args.run)
    elif ref is None:
        results = run_checks(Path(args.model))
    else:
        with tempfile.TemporaryDirectory(prefix="tunelab-check-") as folder:
            results = run_checks(merge_run(args.model, Path(folder) / "merged"), ref)
    print(format_table(results))
    return 1 if failed(results) else 0


def _gguf_results(path: Path, run: str | None):
    from tunelab.export.gguf_checks import check_gguf

    tokenizer = None
    if run is not None:
        from tunelab.errors import TunelabError
        from tunelab.models import ResolvedModel, load_tokenizer
        from tunelab.runs import find_run

        ref = find_run(run)
        if ref is None:
            raise TunelabError(f"--run {run}: not a run directory")
        weights = str(ref.weights)
        tokenizer = load_tokenizer(ResolvedModel(weights, weights, "hf_dir"), ref.config.model)
    return check_gguf(path, tokenizer)
