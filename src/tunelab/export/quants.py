"""The GGUF tensor types `tunelab export --quant` writes; a module of its own so the CLI can list them
without loading torch."""
QUANTS = ("f16", "q8_0", "f32")
