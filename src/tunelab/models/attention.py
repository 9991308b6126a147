"""Attention for packed rows: causal SDPA per packed sequence, similar lengths batched into one call.

Why by hand: transformers 5.23 can keep packed sequences apart only through a dense block mask
(derived from `position_ids`), which makes CPU SDPA compute the full T x T score matrix and copy the
KV heads for grouped-query attention — about 6x slower than one `is_causal` call per sequence — and
with the default cache path the mask is silently not applied at all. A registered attention
function receives `position_ids`, so it can find the sequence starts (positions restart at 0) and
run SDPA on each sequence alone: no cross-contamination by construction, and no T x T work.
Sequences of similar length go through one padded call (`length_groups`, `_grouped_causal`); in bf16 on
CPU that call is `blocked_attention` (batched matmuls, ~2x faster than CPU flash attention there).
A sliding window (Mistral, Qwen2, Phi3, Gemma2) becomes that sequence's own banded mask, and Gemma2's
attention soft-cap goes through the plain maths, since SDPA has no soft-cap.

The implementation is registered at run time and switched on only for the duration of training
(`packed_attention`); it is never written into a saved `config.json`.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from tunelab.compat import ATTENTION_FIELD
from tunelab.errors import TunelabError
from tunelab.models import blocked_attention
from tunelab.switch import switched

PACKED = "tunelab_packed"


def sequence_bounds(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """(start, end) of each packed sequence in each row: a sequence starts where its position is 0."""
    bounds = []
    for row in position_ids:
        starts = (row == 0).nonzero().flatten().tolist()
        if not starts or starts[0] != 0:
            starts = [0, *starts]
        ends = [*starts[1:], row.numel()]
        bounds.append(list(zip(starts, ends)))
    return bounds


def packed_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """query [B, H, T, D], key/value [B, Hkv, T, D] -> ([B, T, H, D], None). Honours what the decoder layer
    passes: `sliding_window` (Mistral, Qwen2, Phi3, Gemma2's local layers) and `softcap` (Gemma2)."""
    position_ids = kwargs.get("position_ids")
    window, softcap = kwargs.get("sliding_window"), kwargs.get("softcap")
    if position_ids is None and attention_mask is None and query.shape[2] == key.shape[2]:
        # Never guess: without positions, packed sequences would attend to each other.
        raise TunelabError(f"train.packing: {type(module).__name__} does not pass position_ids to its attention, "
                           "so packed examples cannot be kept apart; set train.packing=false")
    if attention_mask is not None or query.shape[2] != key.shape[2]:
        # Padded batches and cached generation are not packed: the stock path is right there (its mask
        # already holds any sliding window; SDPA has no soft-cap, so that goes through the plain maths).
        if softcap is not None:
            out = _attend(query, key, value, attention_mask, scaling, softcap, dropout if module.training else 0.0)
            return out.transpose(1, 2).contiguous(), None
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    rows = []
    for b, spans in enumerate(sequence_bounds(position_ids.expand(query.shape[0], -1))):
        drop = dropout if module.training else 0.0
        if softcap is None and (window is None or max(e - s for s, e in spans) <= window):
            rows.append(_grouped_causal(query[b : b + 1], key[b : b + 1], value[b : b + 1], spans, scaling, drop))
            continue
        pieces = [_attend(query[b : b + 1, :, s:e], key[b : b + 1, :, s:e], value[b : b + 1, :, s:e],
                          _window_mask(e - s, window, query.device), scaling, softcap, drop)
                  for s, e in spans]
        row = torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0]
        rows.append(row.transpose(1, 2))
    out = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]
    return out.contiguous(), None


PAD_SLACK = 0.25  # padding a group may add, as a share of its real tokens (measured break-even ~0.4)


def length_groups(spans: list[tuple[int, int]], slack: float = PAD_SLACK) -> list[list[tuple[int, int]]]:
    """Spans, longest first, in groups that pad to their longest span with at most `slack` extra tokens."""
    groups: list[list[tuple[int, int]]] = []
    tokens = 0
    for span in sorted(spans, key=lambda se: se[0] - se[1]):
        n = span[1] - span[0]
        if groups:
            group = groups[-1]
            longest = group[0][1] - group[0][0]
            if longest * (len(group) + 1) <= (1 + slack) * (tokens + n):
                group.append(span)
                tokens += n
                continue
        groups.append([span])
        tokens = n
    return groups


def _grouped_causal(query, key, value, spans, scaling, dropout: float) -> torch.Tensor:
    """Causal attention of one packed row [1, H, T, D] -> [1, T, H, D], one SDPA call per group of similar
    lengths instead of one per sequence (CPU flash attention's backward has ~1 ms fixed cost per call).

    A group is padded at the end of each sequence. Exact: under the causal mask no real query sees a
    padded key (they all come after it), padded query rows are dropped, so their gradient is zero and
    nothing flows back through the padding."""
    total = query.shape[2]
    if len(spans) == 1:
        return _attend(query, key, value, None, scaling, None, dropout).transpose(1, 2)
    tokens = [x[0].transpose(0, 1) for x in (query, key, value)]  # [T, H, D] views
    flats, where, offset = [], torch.empty(total, dtype=torch.long), 0
    for group in length_groups(spans):
        longest = group[0][1] - group[0][0]
        if len(group) == 1:  # one sequence: a view of the row, nothing to gather
            (s, e), = group
            q, k, v = (x[:, :, s:e] for x in (query, key, value))
            where[s:e] = torch.arange(offset, offset + longest)
        else:
            index = torch.zeros(len(group), longest, dtype=torch.long)
            for i, (s, e) in enumerate(group):
                index[i, : e - s] = torch.arange(s, e)
                where[s:e] = torch.arange(offset + i * longest, offset + i * longest + e - s)
            flat_index = index.flatten().to(query.device)
            q, k, v = (t.index_select(0, flat_index).view(len(group), longest, *t.shape[1:]).transpose(1, 2)
                       for t in tokens)
        out = _attend(q, k, v, None, scaling, None, dropout)  # [n, H, longest, D]
        n, heads, _, dim = out.shape
        flats.append(out.transpose(1, 2).reshape(n * longest, heads, dim))
        offset += n * longest
    flat = torch.cat(flats) if len(flats) > 1 else flats[0]
    return flat.index_select(0, where.to(query.device)).unsqueeze(0)


def _window_mask(length: int, window: int | None, device) -> torch.Tensor | None:
    """Causal mask of one sequence whose tokens see only the last `window` positions (transformers'
    sliding_window_overlay: kv > q - window); None when the window covers the whole sequence."""
    if window is None or length <= window:
        return None
    q = torch.arange(length, device=device)[:, None]
    kv = torch.arange(length, device=device)[None, :]
    return (kv <= q) & (kv > q - window)


CPU_FP32_BELOW = 256  # sequences shorter than this attend in fp32 on CPU (see _short_on_cpu)


def _short_on_cpu(query: torch.Tensor) -> bool:
    """bf16/fp16 attention on CPU over fewer than CPU_FP32_BELOW tokens runs faster in fp32.

    Why: CPU flash attention cuts short sequences into small blocks (32 queries below 192 tokens), and
    its bf16 kernels pay a set-up per block that fp32's do not: measured on an AMX Xeon (fwd+bwd, 9 heads,
    3 KV heads, dim 64), 8 x 120 tokens took 15.1 ms in bf16 against 7.5 ms in fp32 (casts included),
    1 x 48 tokens 1.31 against 0.44 ms; from ~250 tokens on bf16 is as fast or faster (1 x 480: 8.9
    against 12.0 ms). fp32 is also the more exact of the two."""
    if query.device.type != "cpu" or query.shape[2] >= CPU_FP32_BELOW:
        return False
    # under autocast SDPA computes in the autocast dtype whatever its inputs' (RoPE hands it fp32)
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else query.dtype
    return dtype in (torch.bfloat16, torch.float16)


def _attend(query, key, value, mask, scaling, softcap, dropout: float) -> torch.Tensor:
    """One causal attention: SDPA (is_causal, or a boolean/additive mask), or, with a soft-cap, the plain
    maths (SDPA has none): tanh(scores / cap) * cap before the mask, as Gemma2's own eager path does."""
    if softcap is None and mask is None and blocked_attention.usable(query, dropout):
        return blocked_attention.causal_attention(query, key, value, scaling)
    gqa = query.shape[1] != key.shape[1]
    if softcap is None and mask is None and _short_on_cpu(query):
        with torch.autocast("cpu", enabled=False):  # CPU autocast would cast SDPA's inputs back to bf16
            out = F.scaled_dot_product_attention(query.float(), key.float(), value.float(), dropout_p=dropout,
                                                 is_causal=True, scale=scaling, enable_gqa=gqa)
        return out.to(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else query.dtype)
    if softcap is None:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout,
                                              is_causal=mask is None, scale=scaling, enable_gqa=gqa)
    if gqa:
        repeat = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(repeat, dim=1), value.repeat_interleave(repeat, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.tanh(query @ key.transpose(-1, -2) * scale / softcap) * softcap
    if mask is None:  # causal, the queries being the last of the keys (cached generation has fewer queries)
        queries, keys = query.shape[2], key.shape[2]
        mask = torch.ones(queries, keys, dtype=torch.bool, device=query.device).tril(keys - queries)
    if mask.dtype == torch.bool:  # the dtype's minimum, not -inf: a padded query row must not become NaN
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    else:
        scores = scores + mask[..., : key.shape[2]]
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = F.dropout(probs, p=dropout, training=dropout > 0)
    return probs @ value


def _packed_mask(*args, **kwargs):
    """Mask factory for PACKED: no dense mask for packed rows (sequences are found from position_ids);
    padded batches get the stock SDPA padding mask."""
    if kwargs.get("attention_mask") is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, **kwargs)


def register_packed_attention() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED, packed_sdpa_attention)
    AttentionMaskInterface.register(PACKED, _packed_mask)
    return PACKED


def _configs(model) -> list:
    """Every config in the model that selects an attention implementation (peft wrappers included)."""
    seen, configs = set(), []
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, ATTENTION_FIELD) and id(config) not in seen:
            seen.add(id(config))
            configs.append(config)
    return configs


@contextlib.contextmanager
def packed_attention(model, enabled: bool = True):
    """Run `model` with packed attention inside the block; restore the previous implementation after."""
    if not enabled:
        yield model
        return
    register_packed_attention()
    with switched(_configs(model), ATTENTION_FIELD, PACKED):
        yield model
