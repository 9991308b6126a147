"""`tunelab export --format gguf`: a run (merged first) or a Llama model directory as one GGUF file for
llama.cpp, Ollama and LM Studio.

The file is written beside the target as FILE.tmp, read back with transformers' own GGUF loader, and only
renamed into place when its logits match those of the source model with its weights rounded the same way
(f16/q8_0; none for f32). That comparison is exact, so it catches a wrong name, permutation or
hyperparameter however noisy the rounding is; how far the rounding moved the logits is reported too.

The architectures written are those of gguf_arch.py (Llama, Mistral, Qwen2/2.5, Qwen3, Gemma 2, Phi-3), each
one that transformers' GGUF loader reads back, with a byte-level BPE tokenizer (gguf_vocab.py). The whole model is held in memory while
writing (fine for the small models tunelab trains on a CPU; llama.cpp's converter streams instead).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from tunelab.data.templates import render_conversation
from tunelab.errors import TunelabError
from tunelab.export.checks import CheckResult, failed, run_checks
from tunelab.export.gguf_arch import gguf_arch
from tunelab.export.gguf_tensors import add_tensors, file_type, gguf_tensors, round_trip
from tunelab.export.gguf_kquant import llama_cpp, quantization_check, quantize
from tunelab.export.quants import LLAMA_CPP, QUANTS
from tunelab.export.gguf_vocab import add_vocab
from tunelab.data.stops import SAMPLE, end_of_turn_id

# Largest |logit difference| allowed between the file and the equally rounded source, relative to the
# largest |logit|: float noise only (the same rounded weights through the same model class).
TOLERANCE = 1e-5
MODELFILE_CONTEXT = 8192   # num_ctx written to a Modelfile: the model's context, at most this (memory grows with it)


@dataclass
class GgufExport:
    path: Path
    max_diff: float              # max |logit difference|, source model vs the file read back by transformers
                                 # (0 for f32; the cost of rounding for f16/q8_0)
    checks: list[CheckResult]    # the export checks of the source, then those of the file


def export_gguf(model: str, output: str | Path, quant: str = "f16", ollama: bool = False) -> GgufExport:
    """Write `model` (a run, checkpoint-N or local model directory) as a GGUF file at `output`; with `ollama`, a
    checked Modelfile beside it."""
    from tunelab.runs.loading import find_run, resolve_base
    from tunelab.runs.merge import merge_run

    if quant not in QUANTS:
        raise TunelabError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    if quant in LLAMA_CPP:
        llama_cpp(quant)  # the missing extra is named before any slow work
    output = Path(output)
    ref = find_run(model)
    gguf_arch(_config(resolve_base(ref).location if ref else local_dir(model)), model)  # before a slow merge
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tunelab-export-", dir=output.parent) as scratch:
        source = merge_run(model, Path(scratch) / "merged") if ref else Path(local_dir(model))
        gguf_arch(_config(str(source)), model)  # a run may have changed the head (a classifier)
        family = ollama_family_of(source, ref) if ollama else None   # refused before the slow writing
        checks = run_checks(source, ref)
        name = ref.run.path.name if ref else Path(model).name
        if quant in LLAMA_CPP:
            max_diff, file_checks = write_k_quant(source, output, quant, name, Path(scratch))
        else:
            max_diff, file_checks = write_verified(source, output, quant, name)
        if family is not None:
            file_checks += add_modelfile(source, output, family)
    return GgufExport(output, max_diff, checks + file_checks)


def ollama_family_of(folder: Path, ref) -> str:
    """The chat family whose Ollama template the Modelfile gets (data.template when the run named one)."""
    from transformers import AutoConfig, AutoTokenizer

    from tunelab.data.families import find_family
    from tunelab.export.ollama import ollama_family

    named = ref.config.data.template if ref is not None else None
    found = named or getattr(find_family(AutoConfig.from_pretrained(folder).model_type,
                                         AutoTokenizer.from_pretrained(folder).get_vocab()), "name", None)
    ollama_family(found)
    return found


def add_modelfile(folder: Path, output: Path, family: str) -> list[CheckResult]:
    """The Modelfile beside the GGUF, and its checks; removed again if it does not render as the model trained."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from tunelab.export.ollama import check_modelfile, write_modelfile

    tokenizer, config = AutoTokenizer.from_pretrained(folder), AutoConfig.from_pretrained(folder)
    try:
        generation = GenerationConfig.from_pretrained(folder)
        temperature = generation.temperature if generation.do_sample else None
    except OSError:
        temperature = None
    path = write_modelfile(output, tokenizer, family, min(config.max_position_embeddings, MODELFILE_CONTEXT),
                           temperature)
    checks = check_modelfile(path, tokenizer, family)
    if failed(checks):
        path.unlink()
    return checks


def write_k_quant(folder: Path, output: Path, quant: str, name: str, scratch: Path) -> tuple[float, list[CheckResult]]:
    """An exactly verified f16 file, quantized by llama.cpp, checked tensor by tensor, then renamed to `output`."""
    from transformers import AutoModelForCausalLM

    model, tokenizer = load_source(folder)
    f16 = scratch / "f16.gguf"
    _, checks = write_verified(folder, f16, "f16", name, (model, tokenizer))
    tmp = output.with_name(output.name + ".tmp")
    try:
        quantize(f16, tmp, quant)
        check = quantization_check(f16, tmp)
        if not check.ok:
            raise TunelabError(f"{output}: llama.cpp's {quant} file is not the verified model ({check.detail})")
        loaded = AutoModelForCausalLM.from_pretrained(str(tmp.parent), gguf_file=tmp.name, dtype=torch.float32).eval()
        ids = sample_ids(tokenizer)
        expected = _logits(model, ids)
        max_diff = (expected - _logits(loaded, ids)).abs().max().item()
        scale = expected.abs().max().item()
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return max_diff, [c for c in checks if c.name != "gguf logits"] + [
        CheckResult("gguf logits", True, f"the f16 file llama.cpp quantized reads back exactly; on a sample "
                    f"conversation the {quant} file moves the logits by at most {max_diff:.3g} (largest logit "
                    f"{scale:.3g})"), check]


def local_dir(model: str) -> str:
    """A model directory on disk for anything `--model` names besides a run (a .gguf and built-in names are
    converted to one); hub ids must be downloaded first."""
    from tunelab.models import resolve_model

    resolved = resolve_model(model)
    if not Path(resolved.location).is_dir():
        raise TunelabError(f"--model {model}: not a run or a local model directory; download it first")
    return resolved.location


def load_source(folder: Path) -> tuple:
    """The model (fp32, eval) and tokenizer to write."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(folder)


def write_verified(folder: Path, output: Path, quant: str, name: str,
                   source: tuple | None = None) -> tuple[float, list[CheckResult]]:
    """Write FILE.tmp, compare it with the source read back by transformers, then rename it to `output`;
    `source`: the (model, tokenizer) of `folder` when already loaded."""
    model, tokenizer = source or load_source(folder)
    tmp = output.with_name(output.name + ".tmp")
    try:
        warning = write_gguf(model, tokenizer, tmp, quant, name)
        max_diff, checks = verify_gguf(model, tokenizer, tmp, quant)
        if not checks[0].ok:
            raise TunelabError(f"{output}: the written GGUF does not compute what the model does ({checks[0].detail})")
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    if warning:
        checks.append(CheckResult("gguf pre-tokenizer", False, warning, blocking=False))
    return max_diff, checks


def write_gguf(model, tokenizer, path: Path, quant: str, name: str) -> str | None:
    """Write the file; returns a warning about its tokenizer, if any."""
    import gguf

    arch = gguf_arch(model.config, name)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH[arch.arch]])
    add_hyperparameters(writer, model.config, quant, name, arch.head_dim_key)
    if arch.keys is not None:
        arch.keys(writer, model.config)
    warning = add_vocab(writer, tokenizer, model.config.vocab_size, end_of_turn_id(tokenizer))
    add_tensors(writer, gguf_tensors(model.state_dict(), model.config, arch), quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return warning


def add_hyperparameters(writer, config, quant: str, name: str, head_dim_key: bool = False) -> None:
    """The keys llama.cpp's converter writes for every decoder (`ARCH.context_length` ...)."""
    import gguf

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(name)
    writer.add_vocab_size(config.vocab_size)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base((getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0))
    writer.add_rope_dimension_count(head_dim)
    if head_dim_key or head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(file_type(quant))
    if quant in ("q8_0", "q4_0"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def verify_gguf(model, tokenizer, path: Path, quant: str) -> tuple[float, list[CheckResult]]:
    """Read the file back with transformers and compare it with the source: (max |logit difference| to the
    source, [logits, chat template, tokenizer] results)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    text = render_conversation(tokenizer, SAMPLE)
    ids = sample_ids(tokenizer)
    source, rounded, actual = (_logits(m, ids) for m in (model, rounded_copy(model, quant), loaded))
    cost, error = (source - actual).abs().max().item(), (rounded - actual).abs().max().item()
    scale = rounded.abs().max().item()
    logits = CheckResult("gguf logits", error <= TOLERANCE * scale,
                         f"read back by transformers: max |logit difference| {error:.3g} from the source rounded "
                         f"to {quant}, {cost:.3g} from the source (largest logit {scale:.3g})")
    reread = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    same_ids = reread(text, add_special_tokens=False)["input_ids"] == ids[0].tolist()
    same_template = reread.chat_template == tokenizer.chat_template
    return cost, [
        logits,
        CheckResult("gguf chat template", same_template, "the file carries the model's chat template"
                    if same_template else "the file's chat template differs from the model's"),
        CheckResult("gguf tokenizer", same_ids, "transformers rebuilds the file's tokenizer with the same ids on a "
                    "sample conversation" if same_ids else "transformers' tokenizer rebuilt from the file splits a "
                    "sample conversation differently", blocking=False),
    ]


def rounded_copy(model, quant: str):
    """The model with every matrix rounded as the file stores it (the model itself for f32)."""
    import copy

    if quant == "f32":
        return model
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in rounded.parameters():  # a tied embedding is one parameter, rounded once
            if parameter.ndim >= 2:
                parameter.copy_(round_trip(parameter, quant))
    return rounded


def sample_ids(tokenizer) -> torch.Tensor:
    """A sample conversation as the template renders it: what the logits are compared on."""
    return tokenizer(render_conversation(tokenizer, SAMPLE), add_special_tokens=False,
                     return_tensors="pt")["input_ids"]


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def _config(location: str):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(location)
