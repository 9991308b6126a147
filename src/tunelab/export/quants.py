"""The GGUF tensor types `tunelab export --quant` writes; a module of its own so the CLI can list them
without loading torch.

f32, f16, q8_0 and q4_0 are written here: the `gguf` package quantizes them, and its dequantizer returns exactly
what a reader gets, so the export verifies the file exactly. The k-quants (q4_k_m, q5_k_m, q6_k) are llama.cpp's
own: `gguf` 0.19 can only dequantize them, and llama.cpp's `_m` mixes choose a type per tensor by rules of its
own, so they are made by llama.cpp's quantizer (`llama_model_quantize`, from llama-cpp-python: the `llamacpp` extra)
from a verified f16 file, and checked tensor by tensor within the format's error bound.
"""
WRITTEN = ("f16", "q8_0", "q4_0", "f32")
LLAMA_CPP = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
             "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}   # llama.cpp's file types (llama.h)
QUANTS = WRITTEN + tuple(LLAMA_CPP)
EXTRA = ("pip install 'tunelab[llamacpp]' (llama-cpp-python: no wheel on PyPI, it builds from source with cmake and "
         "a C++ compiler, several minutes)")
