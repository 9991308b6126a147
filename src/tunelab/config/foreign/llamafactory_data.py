"""LLaMA-Factory's data keys -> tunelab's: data sets from a dataset_dir or the hub (concatenated or interleaved),
the chat template family, packing (tunelab.config.foreign.llamafactory holds the table of every key)."""
from __future__ import annotations

from tunelab.config.foreign.common import as_bool, name_list, template_family
from tunelab.config.foreign.rules import Context, Unsupported

MIX_STOPS = {"interleave_under": "first_exhausted", "interleave_over": "all_exhausted"}


def dataset(value, ctx: Context) -> str | None:
    names, directory = name_list(value), str(ctx.get("dataset_dir", "data"))
    if directory.startswith("REMOTE:"):
        raise Unsupported(f"dataset_dir {directory!r}: a remote data directory (Ray); copy it here and give its path")
    online = directory == "ONLINE"
    sources = [({"path": f"hf:{name}"} if online else {"path": directory, "dataset": name}) for name in names]
    strategy = ctx.get("mix_strategy", "concat")
    if strategy == "concat":
        if online and len(sources) > 1:
            raise Unsupported("several hub data sets with mix_strategy concat: use interleave_under/over, or a "
                              "local dataset_dir")
        ctx.set("data.path", sources[0]["path"])
        if not online:
            ctx.set("data.dataset", ",".join(names))
        return None
    if strategy not in MIX_STOPS:
        raise Unsupported(f"mix_strategy {strategy!r}: expected concat, interleave_under or interleave_over")
    probs = [float(p) for p in name_list(ctx.get("interleave_probs", ""))] or [1.0] * len(sources)
    if len(probs) != len(sources):
        raise Unsupported(f"interleave_probs has {len(probs)} values for {len(sources)} data sets")
    ctx.set("data.mix", [{**source, "weight": p} for source, p in zip(sources, probs)])
    ctx.set("data.mix_stop", MIX_STOPS[strategy])
    return None


def eval_dataset(value, ctx: Context) -> str | None:
    ctx.set("eval.data", str(ctx.get("dataset_dir", "data")))
    ctx.set("eval.dataset", ",".join(name_list(value)))
    return "scored with generation metrics after training; held-out loss during it comes from val_size"


# LLaMA-Factory template name -> tunelab family (data.template), and what else it implies.
TEMPLATES = {
    "alpaca": "alpaca", "chatml": "chatml", "qwen": "qwen2", "qwen3": "qwen3", "qwen3_nothink": "qwen3",
    "llama2": "llama2", "llama3": "llama3", "gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma",
    "mistral": "mistral", "phi": "phi3", "phi4": "phi4", "deepseekr1": "deepseek-r1", "glm4": "glm4",
    "smollm2": "smollm2", "smollm": "chatml",
}


def template(value, ctx: Context) -> str | None:
    if value in ("empty", "base") and ctx.get("stage") == "pt":
        return "pretraining renders no conversation"
    template_family(value, TEMPLATES, "LLaMA-Factory's template", ctx, "); leave it out to use the tokenizer's own")
    if value.endswith("_nothink"):
        ctx.set("data.enable_thinking", False)
    return "the tokenizer's own template when the model is of that family"


def packing(value, ctx: Context) -> str | None:
    on = as_bool(value) or as_bool(ctx.get("neat_packing", False))
    ctx.set("train.packing", on)
    return "each example attends only to itself (LLaMA-Factory's neat_packing)" if on else None
