"""Training throughput: tunelab vs a careful plain Trainer script, LLaMA-Factory and the tutorial recipe.

What it measures. Every setup fine-tunes the same model on the same examples with the same settings
(1 epoch, linear schedule, batch 8, max length 512, 2 threads), LoRA r 8 / alpha 16 / all linear layers /
dropout 0 unless said otherwise:

  tunelab       `python -m tunelab train CONFIG` — the project's own path, whatever it does today
  hf_careful    plain Trainer + peft as a careful user writes it: chat template, loss on the answer only,
                dynamic padding, length grouping, bf16 autocast where the CPU has native bf16
  llamafactory  LLaMA-Factory 0.9.5 from PyPI in its own venv (created once under ~/.cache/tunelab/bench):
                `llamafactory-cli train` with the model's template (smollm2), cutoff_len 512, bf16 + use_cpu
  hf_tutorial   the classic tutorial recipe: every example padded to max_length, fp32, random order,
                same loss masking (so the losses are comparable)

`--methods lora,full,qlora` adds full fine-tuning (lr 2e-5) and QLoRA (bitsandbytes 4-bit NF4) rows for
tunelab and the careful script (the peers run the LoRA work only). `--precision fp32` measures the fp32
path of every setup on any CPU.

Each setup runs in its own process, so its whole-process wall time (imports, model load, tokenization,
training, saving) and its peak RSS are its own. Reported per setup:

  real tokens/s      non-padding tokens trained / the training runtime the setup reports
  wall s, peak RSS   of the whole child process (perf_counter around it; os.wait4 -> ru_maxrss)
  train_loss         mean training loss over the run, as the Trainer reports it
  % of ceiling       real tokens/s / (FLOP/s of the model's own matmul shapes, measured in this run, in the
                     run's precision / (4 N) for LoRA and QLoRA, (6 N) for full fine-tuning)
  wall vs X          X's wall / this wall (> 1: faster than X); RSS vs careful: this peak / the careful one's

Run it on an otherwise idle machine (hf_tutorial alone takes ~7 minutes, LLaMA-Factory ~4):

    .venv/bin/python bench/train_throughput.py                                # the LoRA work, all setups
    .venv/bin/python bench/train_throughput.py --methods lora,full,qlora      # plus full and QLoRA rows
    .venv/bin/python bench/train_throughput.py --precision fp32 --only tunelab --only hf_careful
    .venv/bin/python bench/train_throughput.py --limit 16 --max-length 128 --skip-tutorial   # smoke test

`--repeats N` runs every setup N times, in rounds (each round runs every setup once, in the same order, and
measures the matmul rate again), so a VM whose speed moves from one minute to the next slows all setups alike.
Each setup's row is then its run with the median wall time (of an even count, the faster of the two middle
runs: with 2 rounds, the faster run of each setup), the ceiling uses the median rate (of an even count, the
higher), and every run's wall is listed under the table and kept in the JSON (`rounds`).

It prints a markdown table and writes everything as JSON to --output (bench/results/train_throughput.json).
The latest full-size table belongs in docs/performance.md (the README quotes its headline).
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

SETUPS = ("tunelab", "hf_careful", "llamafactory", "hf_tutorial")
LORA_ONLY = ("llamafactory", "hf_tutorial")  # the peers run the main (LoRA) work only
RESULT_PREFIX = "RESULT "
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "train_throughput.json"
# Rows per matmul when the ceiling is measured: about the tokens a training step multiplies at once.
MATMUL_TOKENS = 1024
METHODS = ("lora", "full", "qlora")
LEARNING_RATES = {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5}
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
    model = careful_model(settings["model_dir"], settings["method"], settings["baseline_precision"])
    rows = [tokenize_for_sft(tokenizer, record, settings["max_length"]) for record in read_records(settings["data"])]
    args = TrainingArguments(
        output_dir=settings["work_dir"],
        per_device_train_batch_size=settings["batch_size"],
        num_train_epochs=settings["epochs"],
        learning_rate=LEARNING_RATES[settings["method"]],
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
    """Token ids of the whole chat, labels -100 except on the assistant turns, so only the answers are trained."""
    input_ids, labels = chat_tokens(tokenizer, record["messages"])
    return {"input_ids": input_ids[:max_length], "attention_mask": [1] * min(len(input_ids), max_length),
            "labels": labels[:max_length]}


def chat_tokens(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(ids of the whole conversation, labels): each assistant turn's tokens are found as what its message adds to
    the conversation before it plus the generation prompt, the way a careful user masks a multi-turn chat."""
    input_ids = tokenizer.apply_chat_template(messages)["input_ids"]
    labels = [-100] * len(input_ids)
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(tokenizer.apply_chat_template(messages[:turn], add_generation_prompt=True)["input_ids"])
        end = len(tokenizer.apply_chat_template(messages[: turn + 1])["input_ids"])
        labels[start:end] = input_ids[start:end]
    return input_ids, labels


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
    """Every example padded to max_length; labels -100 on the prompts and on the padding."""
    input_ids, labels = chat_tokens(tokenizer, record["messages"])
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    pad = max_length - len(input_ids)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return {"input_ids": input_ids + [pad_id] * pad, "attention_mask": [1] * len(input_ids) + [0] * pad,
            "labels": labels + [-100] * pad}


# --------------------------------------------------------------------------------------------------
# Shared by both baselines.
# --------------------------------------------------------------------------------------------------

def lora_model(model_dir: str, quantization=None):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, quantization_config=quantization)
    if quantization is not None:  # as peft's QLoRA guide says; no gradient checkpointing, like every setup here
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def careful_model(model_dir: str, method: str, precision: str):
    """LoRA; full fine-tuning (fp32 weights and AdamW state, bf16 autocast where the CPU has it); QLoRA
    (bitsandbytes 4-bit NF4 with double quantization, computing in the run's precision)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if method == "full":
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if method == "qlora":
        compute = torch.bfloat16 if precision == "bf16" else torch.float32
        return lora_model(model_dir, BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute))
    return lora_model(model_dir)


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
    """The bench's conversations ({"messages": [...]} per line), as `write_subset` wrote them."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def run_child(setup: str, settings_path: str) -> None:
    """Entry point of a baseline child process: train, then print one RESULT line."""
    settings = json.loads(Path(settings_path).read_text(encoding="utf-8"))
    train = {"hf_careful": train_hf_careful, "hf_tutorial": train_hf_tutorial}[setup]
    print(RESULT_PREFIX + json.dumps(train(settings)), flush=True)


# --------------------------------------------------------------------------------------------------
# The tunelab setup: a YAML config and the CLI, exactly as a user runs it.
# --------------------------------------------------------------------------------------------------

def tunelab_config(args: argparse.Namespace, data: Path, run_dir: Path, method: str = "lora") -> dict:
    lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}
    return {
        "model": {"path": args.model},
        "data": {"path": str(data)},
        "method": {"name": method, **({} if method == "full" else lora)},
        "train": {
            "stage": "sft", "epochs": args.epochs, "lr": LEARNING_RATES[method], "batch_size": args.batch_size,
            "grad_accum": 1,
            "max_length": args.max_length, "warmup": 0, "scheduler": "linear", "report_to": "none",
            "logging_steps": 5, "num_threads": args.threads, "precision": args.precision,
        },
        "output": {"dir": str(run_dir), "overwrite": True},
    }


def tunelab_command(args: argparse.Namespace, data: Path, work: Path, method: str) -> tuple[list[str], Path]:
    import yaml

    run_dir = work / f"tunelab_{method}_run"
    config = work / f"tunelab_{method}.yaml"
    config.write_text(yaml.safe_dump(tunelab_config(args, data, run_dir, method), sort_keys=False), encoding="utf-8")
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
# LLaMA-Factory from PyPI in its own venv (created on first use, then cached), run as its users run it.
# --------------------------------------------------------------------------------------------------

LLAMAFACTORY = "llamafactory==0.9.5"
LLAMAFACTORY_VENV = Path.home() / ".cache" / "tunelab" / "bench" / LLAMAFACTORY.replace("==", "-")


def llamafactory_cli() -> Path:
    """Its CLI, installing it first where needed: torch pinned to the build this process runs (the CPU
    wheel on disk; a bare `pip install llamafactory` would fetch a CUDA build of several GB)."""
    import torch

    cli = LLAMAFACTORY_VENV / "bin" / "llamafactory-cli"
    if cli.is_file():
        return cli
    print(f"installing {LLAMAFACTORY} into {LLAMAFACTORY_VENV} (once) ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(LLAMAFACTORY_VENV)], check=True)
    pip = [str(LLAMAFACTORY_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"torch=={torch.__version__.split('+')[0]}"], check=True)
    subprocess.run([*pip, LLAMAFACTORY], check=True)
    return cli


def llamafactory_command(args: argparse.Namespace, data: Path, work: Path, model_dir: str,
                         precision: str) -> tuple[list[str], Path]:
    """The same work as tunelab's LoRA run: its dataset_info.json naming the examples, its YAML config."""
    import yaml

    data_dir, out = work / "llamafactory_data", work / "llamafactory_out"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "dataset_info.json").write_text(json.dumps({"bench": {
        "file_name": str(data), "formatting": "sharegpt", "columns": {"messages": "messages"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"}}}), encoding="utf-8")
    template = args.llamafactory_template or llamafactory_template(model_dir)
    config = {
        "model_name_or_path": model_dir, "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0, "lora_target": "all",
        "dataset": "bench", "dataset_dir": str(data_dir), "template": template, "cutoff_len": args.max_length,
        "output_dir": str(out), "overwrite_output_dir": True, "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": 1, "learning_rate": LEARNING_RATES["lora"], "num_train_epochs": args.epochs,
        "lr_scheduler_type": "linear", "logging_steps": 5, "save_strategy": "no", "report_to": "none",
        "bf16": precision == "bf16", "use_cpu": True, "seed": 42, "dataloader_num_workers": 0,
    }
    path = work / "llamafactory.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return [str(llamafactory_cli()), "train", str(path)], out


# tunelab's family of a model (tunelab.data.families) -> the LLaMA-Factory template of the same chat format
LLAMAFACTORY_TEMPLATES = {
    "smollm2": "smollm2", "chatml": "chatml", "qwen2": "qwen", "qwen3": "qwen3", "llama3": "llama3",
    "llama2": "llama2", "gemma": "gemma", "mistral": "mistral", "phi3": "phi", "phi4": "phi4",
    "deepseek-r1": "deepseekr1", "glm4": "glm4",
}


def llamafactory_template(model_dir: str) -> str:
    """LLaMA-Factory's template for the model: its family as tunelab finds it from the config and vocabulary."""
    from transformers import AutoConfig, AutoTokenizer

    from tunelab.data.families import find_family

    model_type = AutoConfig.from_pretrained(model_dir).model_type
    family = find_family(model_type, AutoTokenizer.from_pretrained(model_dir).get_vocab())
    if family is not None and family.name == "gemma" and model_type.startswith("gemma3"):
        return "gemma3"
    if family is None or family.name not in LLAMAFACTORY_TEMPLATES:
        sys.exit(f"--model {model_dir}: no LLaMA-Factory template known for its chat format "
                 f"({family.name if family else model_type}); name one with --llamafactory-template")
    return LLAMAFACTORY_TEMPLATES[family.name]


def llamafactory_result(out: Path, real_tokens: int) -> dict:
    """Its train_results.json; real tokens counted the careful script's way (the same chat template)."""
    results = json.loads((out / "train_results.json").read_text(encoding="utf-8"))
    runtime = results["train_runtime"]
    return {"real_tokens": real_tokens, "train_runtime_s": runtime, "tokens_per_s": real_tokens / runtime,
            "train_loss": results["train_loss"], "global_step": None}


def count_real_tokens(model_dir: str, data: Path, max_length: int, epochs: float) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [tokenize_for_sft(tokenizer, record, max_length) for record in read_records(data)]
    return round(sum(len(row["input_ids"]) for row in rows) * epochs)


# --------------------------------------------------------------------------------------------------
# The parent: data, model, one child process per setup, the table.
# --------------------------------------------------------------------------------------------------

def default_data() -> str:
    from tunelab.data.loading import BUILTIN_DIR

    return "builtin:longform" if (BUILTIN_DIR / "longform.json").is_file() else "builtin:instructions"


ROLES = {"system", "user", "assistant"}


def write_subset(spec: str, limit: int, target: Path, dataset: str | None = None) -> int:
    """The first `limit` conversations of any data tunelab reads (Alpaca, ShareGPT, OpenAI messages; a file,
    builtin:NAME, or a dataset_info.json directory with `dataset`), written as one {"messages": [...]} per line: every setup
    then trains on the same text (tunelab's own reading of the format decides, e.g., how an Alpaca input is joined
    to its instruction)."""
    from tunelab.data.loading import load_examples
    from tunelab.errors import TunelabError

    try:
        examples = load_examples(spec, dataset)[:limit]
    except TunelabError as error:
        sys.exit(f"--data {spec}: {error}")
    for example in examples:
        roles = {message["role"] for message in example.get("messages", [])}
        if not roles or not roles <= ROLES or "tools" in example:
            sys.exit(f"--data {spec}: {example.get('source', 'an example')}: expected a conversation of system/user/"
                     f"assistant turns (the bench measures SFT), got {sorted(roles) or 'text'}")
    target.write_text("".join(json.dumps({"messages": e["messages"]}, ensure_ascii=False) + "\n" for e in examples),
                      encoding="utf-8")
    return len(examples)


def model_matmul_rate(model_dir: str, precision: str, threads: int, tokens: int = MATMUL_TOKENS) -> tuple[int, float]:
    """Total parameters (a tied lm_head counted once) and the FLOP/s of the model's own matmuls on this
    machine: every distinct nn.Linear shape (the lm_head's too), forward (x @ W.T) and backward to its input
    (g @ W), `tokens` rows at a time, weighted by how many layers have that shape. A square 2048 x 2048
    matmul would overstate what 576-wide projections reach."""
    from collections import Counter

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.set_num_threads(threads)
    with torch.device("meta"):  # shapes only, no weights are read
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    n_params = sum(p.numel() for p in model.parameters())  # a tied lm_head is the same Parameter: once
    shapes = Counter((m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear))
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    flops = seconds = 0.0
    for (fan_in, fan_out), count in shapes.items():
        x, w = torch.randn(tokens, fan_in, dtype=dtype), torch.randn(fan_out, fan_in, dtype=dtype)
        g = torch.randn(tokens, fan_out, dtype=dtype)
        flops += count * 2 * (2 * tokens * fan_in * fan_out)
        seconds += count * (best_time(lambda: x @ w.T) + best_time(lambda: g @ w))
    return n_params, flops / seconds


def best_time(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


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


def run_setup(setup: str, method: str, args: argparse.Namespace, data: Path, model_dir: str, work: Path,
              real_tokens: int) -> dict:
    name = job_name(setup, method)
    print(f"running {name} ...", file=sys.stderr, flush=True)
    if setup == "tunelab":
        command, out = tunelab_command(args, data, work, method)
    elif setup == "llamafactory":
        command, out = llamafactory_command(args, data, work, model_dir, args.baseline_precision)
    else:
        settings = {"model_dir": model_dir, "data": str(data), "batch_size": args.batch_size, "method": method,
                    "max_length": args.max_length, "epochs": args.epochs, "threads": args.threads,
                    "baseline_precision": args.baseline_precision, "work_dir": str(work / f"{setup}_{method}_out")}
        settings_path = work / f"{setup}_{method}.json"
        settings_path.write_text(json.dumps(settings), encoding="utf-8")
        command = [sys.executable, str(Path(__file__).resolve()), "--child", setup, "--settings", str(settings_path)]
    run = measure(command, work, name.replace(" ", "_"), args.threads, args.verbose)
    if run["returncode"] != 0:
        show_failure(name, run)
        return {"error": f"exit status {run['returncode']}", "wall_s": run["wall_s"], "method": method}
    if setup == "tunelab":
        result = tunelab_result(out)
    elif setup == "llamafactory":
        result = llamafactory_result(out, real_tokens)
    else:
        result = parse_result(run["stdout"])
    result.update(wall_s=run["wall_s"], peak_rss_gb=run["peak_rss_gb"], command=command, method=method)
    print(f"  {name}: {result['tokens_per_s']:.0f} real tokens/s, {run['wall_s']:.1f} s wall, "
          f"{run['peak_rss_gb']:.2f} GB peak RSS", file=sys.stderr, flush=True)
    return result


def job_name(setup: str, method: str) -> str:
    return setup if method == "lora" else f"{setup} {method}"


def parse_result(stdout: Path) -> dict:
    lines = [line for line in stdout.read_text(encoding="utf-8").splitlines() if line.startswith(RESULT_PREFIX)]
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def show_failure(setup: str, run: dict) -> None:
    tail = run["stderr"].read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
    print(f"{setup} FAILED (exit status {run['returncode']}); last lines of its stderr:", file=sys.stderr)
    print("\n".join("  | " + line for line in tail), file=sys.stderr, flush=True)


def table(results: dict, rate: float, n_params: int) -> str:
    header = ["setup", "real tokens/s", "whole-process wall s", "peak RSS GB", "train_loss", "% of ceiling",
              "wall vs careful", "RSS vs careful", "wall vs LLaMA-Factory", "wall vs tutorial"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} |" + " |" * (len(header) - 2))
            continue
        careful = results.get(job_name("hf_careful", r["method"]))
        cells = [name, f"{r['tokens_per_s']:.0f}", f"{r['wall_s']:.1f}", f"{r['peak_rss_gb']:.2f}",
                 f"{r['train_loss']:.4f}", f"{100 * r['tokens_per_s'] / ceiling(rate, n_params, r['method']):.1f}%",
                 ratio(careful, r), ratio(careful, r, "peak_rss_gb", inverse=True),
                 ratio(results.get("llamafactory"), r) if r["method"] == "lora" else "–",
                 ratio(results.get("hf_tutorial"), r) if r["method"] == "lora" else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def representative(rounds: list[dict]) -> tuple[dict, float]:
    """Each job's run with the median wall over the rounds (of an even count, the faster of the two middle
    ones: the same rule for every setup) and the median matmul rate (of an even count, the higher: the ceiling
    is not lowered by a slow round). A job that failed in any round is reported by its failure."""
    results = {}
    for name in rounds[0]["results"]:
        runs = [r["results"][name] for r in rounds]
        failed = [run for run in runs if "error" in run]
        results[name] = failed[0] if failed else sorted(runs, key=lambda run: run["wall_s"])[(len(runs) - 1) // 2]
    rates = sorted(r["model_matmul_flops"] for r in rounds)
    return results, rates[len(rates) // 2]


def spread(rounds: list[dict]) -> str:
    """Under the table, with several rounds: every run's wall per setup and every round's matmul rate."""
    if len(rounds) < 2:
        return ""
    walls = "; ".join(f"{name} " + ", ".join(f"{r['results'][name]['wall_s']:.1f}" for r in rounds)
                      for name in rounds[0]["results"])
    rates = ", ".join(f"{r['model_matmul_flops'] / 1e9:.0f}" for r in rounds)
    which = " (of two, the faster)" if len(rounds) == 2 else ""
    return (f"\n\n{len(rounds)} rounds, each row its median-wall run{which}. Walls s by round: {walls}. "
            f"Matmuls GFLOP/s by round: {rates}.")


def ceiling(rate: float, n_params: int, method: str) -> float:
    """Tokens/s at `rate` FLOP/s: LoRA and QLoRA ~4N FLOP per token, full fine-tuning ~6N."""
    return rate / ((6 if method == "full" else FLOPS_PER_TOKEN_PER_PARAM) * n_params)


def ratio(baseline: dict | None, result: dict, key: str = "wall_s", inverse: bool = False) -> str:
    """baseline / result for times (> 1: faster than the baseline); result / baseline for memory."""
    if not baseline or "error" in baseline or baseline is result:
        return "–"
    value = result[key] / baseline[key] if inverse else baseline[key] / result[key]
    return f"{value:.2f}x"


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


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="built-in name or local HF model directory")
    p.add_argument("--data", default=None, help="conversations in any format tunelab reads (Alpaca, ShareGPT, OpenAI "
                                                 "messages): a file, a directory with dataset_info.json (with "
                                                 "--dataset), or builtin:NAME (default: builtin:longform if shipped, "
                                                 "else builtin:instructions)")
    p.add_argument("--llamafactory-template", default=None, help="LLaMA-Factory's template (default: the one of "
                                                                  "the model's chat format)")
    p.add_argument("--dataset", default=None, help="dataset name(s) in --data's dataset_info.json")
    p.add_argument("--limit", type=int, default=128, help="train on the first N examples")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-tutorial", action="store_true", help="leave out the slow padded hf_tutorial setup")
    p.add_argument("--only", action="append", choices=SETUPS, help="run only this setup (repeatable)")
    p.add_argument("--tunelab-override", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override for the tunelab setup, e.g. train.packing=false (repeatable)")
    p.add_argument("--precision", "--baseline-precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="precision of every setup: auto = bf16 where the CPU has native bf16, else fp32 (emulated "
                        "bf16 is ~100x slower than fp32 and no careful user would keep it); fp32 measures the "
                        "fp32 path on any CPU")
    p.add_argument("--methods", default="lora", help="comma-separated among lora, full, qlora: tunelab and the "
                                                     "careful script run each; the peers run LoRA only")
    p.add_argument("--repeats", type=positive_int, default=1, help="run every setup N times in rounds and report "
                                                                   "each one's median-wall run (default 1)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    p.add_argument("--verbose", action="store_true", help="show the children's stderr (progress bars) live")
    p.add_argument("--child", choices=("hf_careful", "hf_tutorial"), help=argparse.SUPPRESS)
    p.add_argument("--settings", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args.child, args.settings)
        return 0
    from tunelab.models import resolve_model

    setups = [s for s in (args.only or SETUPS) if not (s == "hf_tutorial" and args.skip_tutorial)]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    jobs = [(setup, method) for method in methods for setup in setups if method == "lora" or setup not in LORA_ONLY]
    data_spec = args.data or default_data()
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-") as tmp:
        work = Path(tmp)
        data = work / "data.jsonl"
        n_examples = write_subset(data_spec, args.limit, data, args.dataset)
        model_dir = resolve_model(args.model).location  # converts the built-in GGUF once, before any timing
        info = machine()
        if args.precision == "auto":
            args.precision = "bf16" if info["native_bf16"] else "fp32"
        args.baseline_precision = args.precision
        if "llamafactory" in setups:
            args.llamafactory_template = args.llamafactory_template or llamafactory_template(model_dir)
            llamafactory_cli()  # installed once, before any timing
        warn_about(info, setups)
        real_tokens = count_real_tokens(model_dir, data, args.max_length, args.epochs)
        rounds = []
        for number in range(1, args.repeats + 1):
            n_params, rate = model_matmul_rate(model_dir, args.precision, args.threads)
            print(f"{'' if args.repeats == 1 else f'round {number} of {args.repeats}: '}{n_examples} examples "
                  f"({real_tokens:,} tokens) from {data_spec}, model {args.model} ({n_params:,} parameters; its "
                  f"matmuls {rate / 1e9:.0f} GFLOP/s in {args.precision}: LoRA ceiling "
                  f"{ceiling(rate, n_params, 'lora'):,.0f} tokens/s)", file=sys.stderr, flush=True)
            rounds.append({"model_matmul_flops": rate, "results": {
                job_name(setup, method): run_setup(setup, method, args, data, model_dir, work, real_tokens)
                for setup, method in jobs}})
        results, rate = representative(rounds)
        info["model_matmul_gflops"] = round(rate / 1e9, 1)
    report = {
        "settings": {"model": args.model, "model_dir": model_dir, "data": data_spec, "examples": n_examples,
                     "real_tokens": real_tokens, "batch_size": args.batch_size, "max_length": args.max_length,
                     "epochs": args.epochs, "threads": args.threads, "precision": args.precision,
                     "methods": methods, "tunelab_overrides": args.tunelab_override},
        "n_params": n_params, "model_matmul_flops": rate,
        "ceiling_tokens_per_s": {m: ceiling(rate, n_params, m) for m in methods},
        "machine": info, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results,
        "table": table(results, rate, n_params) + spread(rounds),
    }
    if args.repeats > 1:
        report["rounds"] = rounds
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(report["table"])
    print(f"\nresults written to {args.output}", file=sys.stderr)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
