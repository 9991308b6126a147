"""Memory accounting for `tunelab plan`: what the weights, gradients and optimizer states take, and
how much the activations saved for backward weigh per token (measured, not guessed)."""
from __future__ import annotations

import os

import torch
from torch import nn

# Bytes of optimizer state per trainable parameter (fp32 parameters).
OPTIMIZER_STATE_BYTES = {"adamw": 8, "adamw_8bit": 2, "paged_adamw_8bit": 2, "sgd": 0}


def weight_bytes(model: nn.Module) -> int:
    tensors = {id(p): p for p in model.parameters()} | {id(b): b for b in model.buffers()}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def gradient_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def optimizer_bytes(model: nn.Module, optimizer: str) -> int:
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adafactor":  # factored second moments: one row and one column vector per matrix
        return sum(4 * (sum(p.shape[-2:]) if p.dim() >= 2 else p.numel()) for p in params)
    return OPTIMIZER_STATE_BYTES[optimizer] * sum(p.numel() for p in params)


def process_rss() -> int:
    """Resident set size of this process now (bytes), from /proc; 0 where there is no /proc."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def peak_memory(device: str) -> int:
    """High-water mark of this process so far: RSS on a CPU, allocated memory on a GPU (bytes)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def available_memory(device: str) -> int | None:
    if device == "cuda":  # what the device has free, plus what torch's allocator keeps cached but unused
        return torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class ActivationMeter:
    """Sums the tensors autograd saves for backward during each training forward pass.

    A forward pre-hook on the input embeddings marks where a forward starts (and how many tokens it
    has); a saved-tensors hook counts each saved storage once, leaving out the parameters.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.samples: list[tuple[int, int]] = []   # (tokens, saved bytes) per forward
        self._tokens, self._bytes, self._seen = 0, 0, set()
        self._hooks = None
        self._handle = None

    def _pack(self, tensor):
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.param_ptrs and ptr not in self._seen:
            self._seen.add(ptr)
            self._bytes += storage.nbytes()
        return tensor

    def _forward_starts(self, module, args):
        self._flush()
        if torch.is_grad_enabled() and args:
            self._tokens = args[0].numel()

    def _flush(self):
        if self._tokens and self._bytes:
            self.samples.append((self._tokens, self._bytes))
        self._tokens, self._bytes, self._seen = 0, 0, set()

    def __enter__(self):
        self._handle = self.model.get_input_embeddings().register_forward_pre_hook(self._forward_starts)
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        self._handle.remove()
        self._flush()

    def max_tokens(self) -> int:
        return max((tokens for tokens, _ in self.samples), default=0)

    def bytes_per_token(self) -> float:
        if not self.samples:
            return 0.0
        return max(saved / tokens for tokens, saved in self.samples)
