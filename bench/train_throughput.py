"""Training throughput: tunelab vs a careful and a tutorial-style plain Hugging Face Trainer + peft run.

What it measures. Three setups fine-tune the same model with LoRA (r 8, alpha 16, all linear layers) on
the same examples with the same settings (1 epoch, lr 2e-4 linear, batch 8, max length 512, 2 threads):

  tunelab      `python -m tunelab train CONFIG` — the project's own path, whatever it does today
  hf_careful   plain Trainer + peft as a careful user writes it: chat template, loss on the answer only,
               dynamic padding, length grouping, bf16 autocast
  hf_tutorial  the classic tutorial recipe: every example padded to max_length, fp32, random order,
               same loss masking (so the losses are comparable)

Each setup runs in its own process, so its whole-process wall time (imports, model load, tokenization,
training, saving) and its peak RSS are its own. Reported per setup:

  real tokens/s      non-padding tokens trained / the Trainer's train_runtime
  wall s, peak RSS   of the whole child process (perf_counter around it; os.wait4 -> ru_maxrss)
  train_loss         mean training loss over the run, as the Trainer reports `training_loss`
  % of ceiling      real tokens/s / (measured matmul FLOP/s / (4 * N_params)), bf16 where native, else fp32
  wall vs careful    careful wall / this wall (> 1: faster than the careful baseline); same for tutorial

Run it on an otherwise idle machine (the hf_tutorial setup alone takes ~6 minutes at full size):

    .venv/bin/python bench/train_throughput.py                      # all three setups
    .venv/bin/python bench/train_throughput.py --skip-tutorial      # without the slow padded baseline
    .venv/bin/python bench/train_throughput.py --only tunelab --tunelab-override train.packing=false
    .venv/bin/python bench/train_throughput.py --limit 16 --max-length 128 --skip-tutorial   # smoke test

It prints a markdown table and writes everything as JSON to --output (bench/results/train_throughput.json).
The latest full-size table belongs in the performance section of the main README.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETUPS = ("tunelab", "hf_careful", "hf_tutorial")
RESULT_PREFIX = "RESULT "
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "train_throughput.json"
# Peak bf16 matmul throughput assumed for the reference CPU (AVX512-BF16/AMX class, 2 cores).
PEAK_FLOPS = 800e9
# LoRA training costs ~4 * N_params FLOPs per token: 2N forward + 2N for the activation gradients in
# backward; the frozen base weights get no weight gradients (that would be the other 2N of the usual 6N).
FLOPS_PER_TOKEN_PER_PARAM = 4


# --------------------------------------------------------------------------------------------------
# The careful baseline: what a user who knows the Trainer well writes by hand.
# --------------------------------------------------------------------------------------------------

def train_hf_careful(settings: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    torch.set_num_threads(settings["threads"])
    tokenizer = AutoTokenizer.from_pretrained(settings["model_dir"])
    model = lora_model(settings["model_dir"])
    rows = [tokenize_for_sft(tokenizer, record, settings["max_length"]) for record in read_records(settings["data"])]
    args = TrainingArguments(
        output_dir=settings["work_dir"],
        per_device_train_batch_size=settings["batch_size"],
        num_train_epochs=settings["epochs"],
        learning_rate=2e-4,
        lr_scheduler_type="linear",
        bf16=settings["baseline_precision"] == "bf16",
        use_cpu=True,  # bf16 on a machine without a GPU is refused unless the CPU is asked for explicitly
        train_sampling_strategy="group_by_length",  # transformers 5's name for group_by_length=True
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        processing_class=tokenizer,
    )
    output = trainer.train()
    return baseline_result(output, rows, settings["epochs"])


def tokenize_for_sft(tokenizer, record: dict, max_length: int) -> dict:
    """Token ids of the whole chat, labels -100 on the prompt so only the answer is trained."""
    prompt, full = chat_messages(record)
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"]
    input_ids = tokenizer.apply_chat_template(full)["input_ids"][:max_length]
    labels = [-100] * min(len(prompt_ids), len(input_ids)) + input_ids[len(prompt_ids):]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


# --------------------------------------------------------------------------------------------------
# The tutorial baseline: pad everything to max_length, fp32, default collator, random order.
# --------------------------------------------------------------------------------------------------

def train_hf_tutorial(settings: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, Trainer, TrainingArguments, default_data_collator

    torch.set_num_threads(settings["threads"])
    tokenizer = AutoTokenizer.from_pretrained(settings["model_dir"])
    model = lora_model(settings["model_dir"])
    rows = [tokenize_padded(tokenizer, record, settings["max_length"]) for record in read_records(settings["data"])]
    args = TrainingArguments(
        output_dir=settings["work_dir"],
        per_device_train_batch_size=settings["batch_size"],
        num_train_epochs=settings["epochs"],
        learning_rate=2e-4,
        lr_scheduler_type="linear",
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        seed=42,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                      data_collator=default_data_collator)
    output = trainer.train()
    return baseline_result(output, rows, settings["epochs"])


def tokenize_padded(tokenizer, record: dict, max_length: int) -> dict:
    """Every example padded to max_length; labels -100 on the prompt and on the padding."""
    prompt, full = chat_messages(record)
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"]
    encoded = tokenizer.apply_chat_template(full, padding="max_length", truncation=True, max_length=max_length)
    labels = [
        token if position >= len(prompt_ids) and real else -100
        for position, (token, real) in enumerate(zip(encoded["input_ids"], encoded["attention_mask"]))
    ]
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}


# --------------------------------------------------------------------------------------------------
# Shared by both baselines.
# --------------------------------------------------------------------------------------------------

def lora_model(model_dir: str):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def chat_messages(record: dict) -> tuple[list[dict], list[dict]]:
    """Alpaca record -> ([user], [user, assistant])."""
    user = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
    prompt = [{"role": "user", "content": user}]
    return prompt, prompt + [{"role": "assistant", "content": record["output"]}]


def baseline_result(output, rows: list[dict], epochs: float) -> dict:
    real_tokens = round(sum(sum(row["attention_mask"]) for row in rows) * epochs)
    runtime = output.metrics["train_runtime"]
    return {
        "real_tokens": real_tokens,
        "train_runtime_s": runtime,
        "tokens_per_s": real_tokens / runtime,
        "train_loss": output.training_loss,
        "global_step": output.global_step,
    }


def read_records(path: str | Path) -> list[dict]:
    """Alpaca-style records (instruction/input/output) from a .json list or a .jsonl file."""
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def run_child(setup: str, settings_path: str) -> None:
    """Entry point of a baseline child process: train, then print one RESULT line."""
    settings = json.loads(Path(settings_path).read_text(encoding="utf-8"))
    train = {"hf_careful": train_hf_careful, "hf_tutorial": train_hf_tutorial}[setup]
    print(RESULT_PREFIX + json.dumps(train(settings)), flush=True)


# --------------------------------------------------------------------------------------------------
# The tunelab setup: a YAML config and the CLI, exactly as a user runs it.
# --------------------------------------------------------------------------------------------------

def tunelab_config(args: argparse.Namespace, data: Path, run_dir: Path) -> dict:
    return {
        "model": {"path": args.model},
        "data": {"path": str(data)},
        "method": {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
        "train": {
            "stage": "sft", "epochs": args.epochs, "lr": 2e-4, "batch_size": args.batch_size, "grad_accum": 1,
            "max_length": args.max_length, "warmup": 0, "scheduler": "linear", "report_to": "none",
            "logging_steps": 5, "num_threads": args.threads, "precision": "auto",
        },
        "output": {"dir": str(run_dir), "overwrite": True},
    }


def tunelab_command(args: argparse.Namespace, data: Path, work: Path) -> tuple[list[str], Path]:
    import yaml

    run_dir = work / "tunelab_run"
    config = work / "tunelab.yaml"
    config.write_text(yaml.safe_dump(tunelab_config(args, data, run_dir), sort_keys=False), encoding="utf-8")
    return [sys.executable, "-m", "tunelab", "train", str(config), *args.tunelab_override], run_dir


def tunelab_result(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return {
        "real_tokens": summary["train_tokens"],
        "train_runtime_s": summary["train_runtime_s"],
        "tokens_per_s": summary["train_tokens_per_s"],
        "train_loss": summary["train_loss"],
        "global_step": summary.get("global_step"),
    }


# --------------------------------------------------------------------------------------------------
# The parent: data, model, one child process per setup, the table.
# --------------------------------------------------------------------------------------------------

def resolve_data_file(spec: str) -> Path:
    """A data file path, or builtin:NAME -> the file dataset_info.json names in tunelab's builtin_data."""
    from tunelab.data.dataset_info import read_index
    from tunelab.data.loading import BUILTIN_DIR, BUILTIN_PREFIX

    if not spec.startswith(BUILTIN_PREFIX):
        return Path(spec)
    name = spec[len(BUILTIN_PREFIX):]
    return BUILTIN_DIR / read_index(BUILTIN_DIR).entries[name]["file_name"]


def default_data() -> str:
    from tunelab.data.loading import BUILTIN_DIR

    return "builtin:longform" if (BUILTIN_DIR / "longform.json").is_file() else "builtin:instructions"


def write_subset(source: Path, limit: int, target: Path) -> int:
    records = read_records(source)[:limit]
    if not records or not all("instruction" in r and "output" in r for r in records):
        sys.exit(f"{source}: expected Alpaca-style records with instruction/input/output")
    target.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return len(records)


def matmul_peak(precision: str, threads: int) -> float:
    """FLOP/s of a large square matmul in `precision` on this machine (what the ceiling is made of)."""
    import torch

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    start, n = time.perf_counter(), 5
    for _ in range(n):
        a @ b
    return 2 * 2048**3 * n / (time.perf_counter() - start)


def model_ceiling(model_dir: str, peak_flops: float = PEAK_FLOPS) -> tuple[int, float]:
    """Total parameters (tied lm_head counted once) and the ceiling in tokens/s:
    ceiling = peak FLOP/s / (4 * N_params), e.g. 800e9 / (4 * 134.5e6) ~ 1,490 tokens/s for SmolLM2-135M."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):  # shapes only, no weights are read
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    n_params = sum(p.numel() for p in model.parameters())  # a tied lm_head is the same Parameter: once
    return n_params, peak_flops / (FLOPS_PER_TOKEN_PER_PARAM * n_params)


def measure(command: list[str], work: Path, name: str, threads: int, verbose: bool) -> dict:
    """Run a child process; its wall time, peak RSS (os.wait4) and where its output went."""
    out_path, err_path = work / f"{name}.stdout", work / f"{name}.stderr"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(out_path, "w") as out, open(err_path, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=None if verbose else err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen we reaped it ourselves
    return {"returncode": proc.returncode, "wall_s": wall, "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9,
            "stdout": out_path, "stderr": err_path}


def run_setup(setup: str, args: argparse.Namespace, data: Path, model_dir: str, work: Path) -> dict:
    print(f"running {setup} ...", file=sys.stderr, flush=True)
    if setup == "tunelab":
        command, run_dir = tunelab_command(args, data, work)
    else:
        settings = {"model_dir": model_dir, "data": str(data), "batch_size": args.batch_size,
                    "max_length": args.max_length, "epochs": args.epochs, "threads": args.threads,
                    "baseline_precision": args.baseline_precision, "work_dir": str(work / f"{setup}_out")}
        settings_path = work / f"{setup}.json"
        settings_path.write_text(json.dumps(settings), encoding="utf-8")
        command = [sys.executable, str(Path(__file__).resolve()), "--child", setup, "--settings", str(settings_path)]
    run = measure(command, work, setup, args.threads, args.verbose)
    if run["returncode"] != 0:
        show_failure(setup, run)
        return {"error": f"exit status {run['returncode']}", "wall_s": run["wall_s"]}
    result = tunelab_result(run_dir) if setup == "tunelab" else parse_result(run["stdout"])
    result.update(wall_s=run["wall_s"], peak_rss_gb=run["peak_rss_gb"], command=command)
    print(f"  {setup}: {result['tokens_per_s']:.0f} real tokens/s, {run['wall_s']:.1f} s wall, "
          f"{run['peak_rss_gb']:.2f} GB peak RSS", file=sys.stderr, flush=True)
    return result


def parse_result(stdout: Path) -> dict:
    lines = [line for line in stdout.read_text(encoding="utf-8").splitlines() if line.startswith(RESULT_PREFIX)]
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def show_failure(setup: str, run: dict) -> None:
    tail = run["stderr"].read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
    print(f"{setup} FAILED (exit status {run['returncode']}); last lines of its stderr:", file=sys.stderr)
    print("\n".join("  | " + line for line in tail), file=sys.stderr, flush=True)


def table(results: dict, ceiling: float) -> str:
    header = ["setup", "real tokens/s", "whole-process wall s", "peak RSS GB", "train_loss",
              "% of ceiling", "wall vs careful", "wall vs tutorial"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setup, r in results.items():
        if "error" in r:
            lines.append(f"| {setup} | failed: {r['error']} |" + " |" * (len(header) - 2))
            continue
        cells = [setup, f"{r['tokens_per_s']:.0f}", f"{r['wall_s']:.1f}", f"{r['peak_rss_gb']:.2f}",
                 f"{r['train_loss']:.4f}", f"{100 * r['tokens_per_s'] / ceiling:.1f}%",
                 ratio(results.get("hf_careful"), r), ratio(results.get("hf_tutorial"), r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio(baseline: dict | None, result: dict) -> str:
    if not baseline or "error" in baseline:
        return "–"
    return f"{baseline['wall_s'] / result['wall_s']:.2f}x"


def machine() -> dict:
    import torch
    from tunelab.models.device import cpu_has_bf16

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    return {"cpu": names[0] if names else platform.processor(), "cores": os.cpu_count(), "native_bf16": cpu_has_bf16(), "load_avg_1min": os.getloadavg()[0],
            "python": platform.python_version(), "torch": torch.__version__}


def warn_about(info: dict, setups: list[str]) -> None:
    """Two things that make the numbers meaningless on a CPU; the run goes on, the JSON records both."""
    if info["load_avg_1min"] > 0.5:
        print(f"WARNING: load average {info['load_avg_1min']:.1f} before starting: another process is using the "
              "CPU, and OpenMP threads that wait on each other slow training down many times over",
              file=sys.stderr)
    if not info["native_bf16"]:
        print("NOTE: this CPU has no native bf16 (avx512_bf16/amx): every setup runs in fp32 (tunelab's precision "
              "auto, hf_careful's --baseline-precision auto) and the ceiling is the fp32 one", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="built-in name or local HF model directory")
    p.add_argument("--data", default=None, help="Alpaca JSON/JSONL file or builtin:NAME (default: builtin:longform "
                                                 "if shipped, else builtin:instructions)")
    p.add_argument("--limit", type=int, default=128, help="train on the first N examples")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-tutorial", action="store_true", help="leave out the slow padded hf_tutorial setup")
    p.add_argument("--only", action="append", choices=SETUPS, help="run only this setup (repeatable)")
    p.add_argument("--tunelab-override", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override for the tunelab setup, e.g. train.packing=false (repeatable)")
    p.add_argument("--baseline-precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="precision of hf_careful: auto = bf16 where the CPU has native bf16, else fp32 "
                        "(emulated bf16 is ~100x slower than fp32 and no careful user would keep it)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    p.add_argument("--verbose", action="store_true", help="show the children's stderr (progress bars) live")
    p.add_argument("--child", choices=SETUPS[1:], help=argparse.SUPPRESS)
    p.add_argument("--settings", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args.child, args.settings)
        return 0
    from tunelab.models import resolve_model

    setups = [s for s in (args.only or SETUPS) if not (s == "hf_tutorial" and args.skip_tutorial)]
    data_spec = args.data or default_data()
    model_dir = resolve_model(args.model).location  # converts the built-in GGUF once, before any timing
    info = machine()
    if args.baseline_precision == "auto":
        args.baseline_precision = "bf16" if info["native_bf16"] else "fp32"
    peak = matmul_peak("bf16" if info["native_bf16"] else "fp32", args.threads)
    info["matmul_peak_gflops"] = round(peak / 1e9, 1)
    n_params, ceiling = model_ceiling(model_dir, peak)
    warn_about(info, setups)
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-") as tmp:
        work = Path(tmp)
        n_examples = write_subset(resolve_data_file(data_spec), args.limit, work / "data.json")
        print(f"{n_examples} examples from {data_spec}, model {args.model} ({n_params:,} parameters, "
              f"ceiling {ceiling:,.0f} tokens/s)", file=sys.stderr, flush=True)
        results = {setup: run_setup(setup, args, work / "data.json", model_dir, work) for setup in setups}
    report = {
        "settings": {"model": args.model, "model_dir": model_dir, "data": data_spec, "examples": n_examples,
                     "batch_size": args.batch_size, "max_length": args.max_length, "epochs": args.epochs,
                     "threads": args.threads, "tunelab_overrides": args.tunelab_override},
        "n_params": n_params, "ceiling_tokens_per_s": ceiling, "peak_flops": peak,
        "baseline_precision": args.baseline_precision,
        "machine": info, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results,
        "table": table(results, ceiling),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(report["table"])
    print(f"\nresults written to {args.output}", file=sys.stderr)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
