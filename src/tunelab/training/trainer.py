"""The Trainer every stage uses: HF Trainer + packed attention + a loss computed only where labels are.

Stages differ in data and loss terms, never in the loop, so resume, mixed precision, accumulation,
schedulers, early stopping and logging integrations all come from transformers.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from transformers import Trainer
from transformers.modeling_outputs import CausalLMOutputWithPast

from tunelab.data.packing import split_packed
from tunelab.models.attention import packed_attention, sequence_bounds
from tunelab.training.fast_lora import FastLora
from tunelab.training.frozen import FrozenInDtype, run_compute_dtype
from tunelab.training.hooks import MethodHooks
from tunelab.training.loss import causal_lm_loss_sum, free_scratch
from tunelab.training.pieces import PieceSize
from tunelab.training.rotary import RotaryInComputeDtype
from tunelab.training.sampler import seeded


def split_causal_lm(model: nn.Module):
    """(decoder, lm_head) of a causal LM (peft wrappers unwrapped), or None when the fused loss would be
    wrong for it: a head with a bias, wrapped by an adapter, or logits that are scaled or soft-capped."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    get_decoder = getattr(inner, "get_decoder", None)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    config = getattr(inner, "config", None)
    if get_decoder is None or type(head) is not nn.Linear or head.bias is not None:
        return None
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    decoder = get_decoder()
    return (decoder, head) if decoder is not None and decoder is not inner else None


def example_lengths(position_ids: torch.Tensor) -> torch.Tensor:
    """[rows, T] positions of packed rows -> [rows, T, 1]: the length of the example each token belongs to."""
    lengths = torch.empty(position_ids.shape, dtype=torch.float32, device=position_ids.device)
    for row, spans in enumerate(sequence_bounds(position_ids)):
        for start, end in spans:
            lengths[row, start:end] = end - start
    return lengths.unsqueeze(-1)


class PackedNeftune:
    """NEFTune on packed rows: uniform noise in +-alpha/sqrt(L*d) on the input embeddings in train mode, L the
    length of each token's own example. transformers' hook (integrations.neftune, 5.23) takes L from the row, which
    is right for one example per row; a packed row holds the whole batch end to end, so every example would get
    sqrt(examples per row) times too little noise. The trainer says which positions the next forward runs (`batch`)."""

    def __init__(self, model: nn.Module, alpha: float | None):
        self.model, self.alpha = model, alpha
        self.lengths: torch.Tensor | None = None
        self.handle = None

    def __enter__(self):
        if self.alpha is not None:
            self.handle = self.model.get_input_embeddings().register_forward_hook(self._add_noise)
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def batch(self, inputs: dict) -> None:
        positions = inputs.get("position_ids")
        self.lengths = example_lengths(positions) if self.alpha is not None and positions is not None else None

    def _add_noise(self, module, args, output):
        if not module.training:
            return output
        lengths = self.lengths
        if lengths is None or lengths.shape[:2] != output.shape[:2]:  # a forward without packed positions: the row
            lengths = torch.full((*output.shape[:2], 1), float(output.shape[1]), device=output.device)
        bound = (self.alpha / torch.sqrt(lengths * output.shape[-1])).to(output.dtype)
        return output + (torch.rand_like(output) * 2 - 1) * bound


def append_rows(inputs: dict, groups: list[list[dict]]) -> dict:
    """input_ids / position_ids (and an all-ones attention_mask, if the batch has one) of a packed [1, T] batch
    with each group's rows laid after it, every row a sequence of its own (positions from 0)."""
    device = inputs["input_ids"].device
    ids = [token for rows in groups for row in rows for token in row["input_ids"]]
    positions = [p for rows in groups for row in rows for p in range(len(row["input_ids"]))]
    out = dict(inputs)
    out["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([ids], device=device)], dim=1)
    out["position_ids"] = torch.cat([inputs["position_ids"], torch.tensor([positions], device=device)], dim=1)
    if "attention_mask" in inputs:
        out["attention_mask"] = torch.ones_like(out["input_ids"])
    return out


def hand_over(hidden: torch.Tensor, own: int, joined: list) -> torch.Tensor:
    """Give each joined term the hidden states of its rows; the first `own` positions are the task batch's."""
    start = own
    for term, rows in joined:
        length = sum(len(row["input_ids"]) for row in rows)
        term.hand_over(hidden[:, start : start + length])
        start += length
    return hidden[:, :own]


class TunelabTrainer(MethodHooks, Trainer):
    """`loss_terms`: extra callables `(model, inputs, outputs) -> tensor` added to the stage's loss
    (MoE balance, forgetting regularizers). `packed`: rows are packed (see tunelab.data.packing) and
    run with packed attention; `row_tokens` > 0 runs a packed batch as pieces of at most that many
    tokens, accumulating gradients, so activation memory does not grow with the batch size ("auto": sized from
    the first step's measured activations, see tunelab.training.pieces).
    `fused_loss`: decoder + chunked cross-entropy on labelled positions. `frozen_in_compute_dtype`: the
    method allows its frozen Linear weights to be stored in a bf16/fp16 run's compute dtype while it trains
    (see tunelab.training.frozen)."""

    def __init__(self, *args, packed: bool = False, row_tokens: int | str = 0, max_length: int = 0,
                 fused_loss: bool = True, frozen_in_compute_dtype: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.packed = packed
        self.pieces = PieceSize(row_tokens, max_length) if packed else PieceSize(0, 0)
        self.frozen = FrozenInDtype(self.model, run_compute_dtype(self.args) if frozen_in_compute_dtype else None)
        # Calling the decoder directly skips a DDP/DeepSpeed wrapper's forward (and ZeRO-3 gathers the head's
        # weight only inside the head's own forward), so only a bare model fuses: one process, no engine.
        bare = self.args.world_size == 1 and not self.is_deepspeed_enabled and not self.is_fsdp_enabled
        self.fused = split_causal_lm(self.model) if fused_loss and bare else None
        if self.fused is not None:
            self.model_accepts_loss_kwargs = True  # we normalise by num_items_in_batch ourselves
        # NEFTune: the Trainer's own hook on padded rows, ours on packed ones (it needs each example's length)
        self.neftune = PackedNeftune(self.model, self.neftune_noise_alpha if packed else None)
        if packed:
            self.neftune_noise_alpha = None

    def train_sampler(self, sampler):
        return seeded(sampler, self.args.data_seed if self.args.data_seed is not None else self.args.seed)

    def train(self, *args, **kwargs):
        try:
            with (packed_attention(self.model, self.packed), self.frozen, FastLora(self.model),
                  RotaryInComputeDtype(self.model), self.neftune):
                return super().train(*args, **kwargs)
        finally:
            free_scratch()

    def evaluate(self, *args, **kwargs):
        with packed_attention(self.model, self.packed), self.frozen:
            return super().evaluate(*args, **kwargs)

    def writing_checkpoint(self):
        return self.frozen.original()  # a checkpoint holds the weights the run was given

    def training_step(self, model, inputs, num_items_in_batch=None):
        # Pieces add up to the batch loss only when each is normalised by the whole batch's item count.
        scaled = num_items_in_batch is not None and self.model_accepts_loss_kwargs
        size = self.pieces.tokens
        pieces = split_packed(inputs, size) if size and scaled else [inputs]  # size 0 unless packed
        # Loss terms are added once per call: each gets its share of the optimizer step, so a term's weight means
        # the same with any accumulation and piece count (the Trainer divides unscaled losses by accumulation).
        accumulation = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        self.term_share = 1.0 / (len(pieces) * (accumulation if scaled else 1))
        step = super(TunelabTrainer, self).training_step
        with self.pieces.measuring(self.model):
            if len(pieces) == 1:
                return step(model, inputs, num_items_in_batch)
            # Only the last piece's backward may reduce gradients across processes: ranks cut their batches into
            # different numbers of pieces, and DDP's all-reduce in each backward would pair up mismatched calls.
            # (DeepSpeed reduces at its own accumulation boundary, as the Trainer's micro-steps leave it to.)
            unsynced = contextlib.nullcontext() if self.is_deepspeed_enabled else self.accelerator.no_sync(model)
            with unsynced:
                loss = sum(step(model, piece, num_items_in_batch) for piece in pieces[:-1])
            return loss + step(model, pieces[-1], num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.neftune.batch(inputs)
        if self.fused is not None and "labels" in inputs:
            loss, outputs = self._fused_loss(inputs, num_items_in_batch)
        else:
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                                 num_items_in_batch=num_items_in_batch)
        loss = self.add_loss_terms(loss, model, inputs, outputs)
        return (loss, outputs) if return_outputs else loss

    def _fused_loss(self, inputs, num_items_in_batch):
        decoder, head = self.fused
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        inputs, joined = self._join_term_rows(inputs)
        # The decoder is called directly, so the autocast accelerate puts around model.forward is applied here.
        with self.accelerator.autocast():
            out = decoder(**inputs, use_cache=False)  # use_cache=False: the cache path ignores packing
            hidden = hand_over(out.last_hidden_state, labels.shape[1], joined)
            loss_sum, count = causal_lm_loss_sum(hidden, head.weight, labels)
        # Training passes the item count of the whole accumulated batch; evaluation takes this batch's mean.
        loss = loss_sum / (num_items_in_batch if num_items_in_batch is not None else max(count, 1))
        return loss, CausalLMOutputWithPast(loss=loss)

    def _join_term_rows(self, inputs: dict) -> tuple[dict, list]:
        """A packed training batch with the rows of loss terms that compute on their own data (KL to the base)
        appended as further sequences: one forward over both instead of a second one."""
        terms = [term for term in self.loss_terms if getattr(term, "joins_forward", False)]
        positions = inputs.get("position_ids")
        if not terms or not self.model.training or positions is None or positions.shape[0] != 1:
            return inputs, []
        joined = [(term, term.rows_to_join(getattr(self, "term_share", 1.0))) for term in terms]
        return append_rows(inputs, [rows for _, rows in joined]), joined
