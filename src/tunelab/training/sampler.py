"""Length-grouped sampling that a resumed run repeats exactly.

Why by hand: the Trainer's `LengthGroupedSampler` draws its permutation from torch's global RNG, which is in a
different state when a run resumes from a checkpoint than it was when the uninterrupted run reached the same
epoch (measured: a kill -9 and resume trained step 5 on other examples, loss 5.9007 against 5.8895). accelerate
makes the Trainer's random sampler reproducible by seeding it per epoch; this does the same for length grouping:
epoch e draws from a generator seeded with `seed + e`, and `set_epoch` (called by the Trainer and accelerate
before every epoch) picks the epoch. Grouping itself is transformers' `get_length_grouped_indices`.
"""
from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


def seeded(sampler, seed: int):
    """The Trainer's sampler, with a length-grouped one replaced by its epoch-seeded twin."""
    if type(sampler) is LengthGroupedSampler:
        return EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
    return sampler
