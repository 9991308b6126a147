"""k-quant GGUF files (q4_k_m, q5_k_m, q6_k), made by llama.cpp's own quantizer from an f16 file that was already
verified exactly (names, layout, metadata), then checked tensor by tensor: each quantized matrix, dequantized by
the `gguf` package, must lie within its type's error bound of the f16 value (relative RMS error, BOUNDS), so a
tensor quantized from the wrong source or stored under the wrong name fails while honest rounding passes.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from tunelab.errors import TunelabError
from tunelab.export.checks import CheckResult
from tunelab.export.quants import EXTRA, LLAMA_CPP

# Relative RMS error of a dequantized tensor against its f16 value, by the type llama.cpp chose for it: 2-3x the
# rounding error of each type (step / sqrt(12) for Gaussian blocks; measured on the default model: q8_0 worst 0.0065,
# q4_0 worst 0.111, both on the embedding), so honest rounding passes and another model's weights do not.
BOUNDS = {"F32": 0.0, "F16": 0.0, "BF16": 0.01, "Q8_0": 0.02, "Q6_K": 0.05, "Q5_K": 0.1, "Q5_0": 0.12,
          "Q5_1": 0.1, "Q4_K": 0.2, "Q4_0": 0.25, "Q4_1": 0.2, "Q3_K": 0.35, "Q2_K": 0.6}


def llama_cpp(quant: str):
    """llama-cpp-python, or one error naming the extra that brings it (checked before any slow work)."""
    try:
        import llama_cpp
    except ImportError:
        raise TunelabError(f"--quant {quant}: k-quants are made by llama.cpp's quantizer, which is not installed: "
                           f"{EXTRA}; or use --quant q4_0 or q8_0, written without it") from None
    return llama_cpp


def quantize(source: Path, output: Path, quant: str) -> None:
    lib = llama_cpp(quant)
    params = lib.llama_model_quantize_default_params()
    params.ftype = getattr(lib, LLAMA_CPP[quant])
    status = lib.llama_model_quantize(str(source).encode(), str(output).encode(), ctypes.byref(params))
    if status != 0:
        raise TunelabError(f"--quant {quant}: llama.cpp's quantizer failed on {source.name} (status {status})")


def tensor_errors(reference: Path, quantized: Path) -> list[tuple[str, str, float]]:
    """(tensor, its type, relative RMS error against the reference file's value) for every tensor."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    values = {t.name: dequantize(t.data, t.tensor_type).astype(np.float64).ravel()
              for t in GGUFReader(reference).tensors}
    errors = []
    for tensor in GGUFReader(quantized).tensors:
        got = dequantize(tensor.data, tensor.tensor_type).astype(np.float64).ravel()
        want = values[tensor.name]
        scale = np.sqrt(np.mean(want ** 2)) or 1.0
        errors.append((tensor.name, tensor.tensor_type.name, float(np.sqrt(np.mean((got - want) ** 2)) / scale)))
    return errors


def quantization_check(reference: Path, quantized: Path) -> CheckResult:
    errors = tensor_errors(reference, quantized)
    over = [(name, kind, error) for name, kind, error in errors if error > BOUNDS.get(kind, 0.5)]
    worst = max(errors, key=lambda item: item[2] / max(BOUNDS.get(item[1], 0.5), 1e-9))
    kinds = ", ".join(sorted({kind for _, kind, _ in errors}))
    if over:
        name, kind, error = over[0]
        return CheckResult("gguf quantization", False, f"{len(over)} tensors beyond their type's error bound, e.g. "
                           f"{name} ({kind}): relative RMS error {error:.3g} > {BOUNDS.get(kind, 0.5)}")
    return CheckResult("gguf quantization", True, f"every tensor within its type's bound of the verified f16 file "
                       f"({kinds}); worst {worst[0]} ({worst[1]}) {worst[2]:.3g}")
