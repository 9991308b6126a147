"""Attention for packed rows: one causal SDPA call per packed sequence.

Why by hand: transformers 5.23 can keep packed sequences apart only through a dense block mask
(derived from `position_ids`), which makes CPU SDPA compute the full T x T score matrix and copy the
KV heads for grouped-query attention — about 6x slower than one `is_causal` call per sequence — and
with the default cache path the mask is silently not applied at all. A registered attention
function receives `position_ids`, so it can find the sequence starts (positions restart at 0) and
run SDPA on each sequence alone: no cross-contamination by construction, and no T x T work.

The implementation is registered at run time and switched on only for the duration of training
(`packed_attention`); it is never written into a saved `config.json`.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from tunelab.errors import TunelabError
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
    """query [B, H, T, D], key/value [B, Hkv, T, D] -> ([B, T, H, D], None)."""
    position_ids = kwargs.get("position_ids")
    if position_ids is None and attention_mask is None and query.shape[2] == key.shape[2]:
        # Never guess: without positions, packed sequences would attend to each other.
        raise TunelabError(f"train.packing: {type(module).__name__} does not pass position_ids to its attention, "
                           "so packed examples cannot be kept apart; set train.packing=false")
    if attention_mask is not None or query.shape[2] != key.shape[2]:
        # Padded batches and cached generation are not packed: the stock SDPA path is right there.
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    gqa = query.shape[1] != key.shape[1]
    rows = []
    for b, spans in enumerate(sequence_bounds(position_ids.expand(query.shape[0], -1))):
        pieces = [
            F.scaled_dot_product_attention(
                query[b : b + 1, :, s:e], key[b : b + 1, :, s:e], value[b : b + 1, :, s:e],
                dropout_p=dropout if module.training else 0.0, is_causal=True, scale=scaling, enable_gqa=gqa,
            )
            for s, e in spans
        ]
        rows.append(torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0])
    out = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]
    return out.transpose(1, 2).contiguous(), None


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
        if config is not None and hasattr(config, "_attn_implementation_internal") and id(config) not in seen:
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
    with switched(_configs(model), "_attn_implementation_internal", PACKED):
        yield model
