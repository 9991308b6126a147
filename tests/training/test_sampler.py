"""The epoch-seeded length-grouped sampler: the same order for the same epoch whatever torch's global RNG did."""
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from tunelab.training.sampler import EpochSeededLengthGroupedSampler, seeded

LENGTHS = [(i * 37) % 101 + 1 for i in range(64)]


def test_same_epoch_same_order_whatever_the_global_rng():
    sampler = EpochSeededLengthGroupedSampler(4, LENGTHS, seed=42)
    torch.manual_seed(0)
    first = list(sampler)
    torch.manual_seed(123)
    torch.rand(1000)
    assert list(sampler) == first
    assert sorted(first) == list(range(len(LENGTHS)))


def test_each_epoch_draws_its_own_order_and_a_seed_changes_it():
    sampler = EpochSeededLengthGroupedSampler(4, LENGTHS, seed=42)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(second) == sorted(first)
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert list(EpochSeededLengthGroupedSampler(4, LENGTHS, seed=7)) != first


def test_batches_hold_similar_lengths():
    """Grouping is transformers': sorted within mega-batches, so batches are far more alike than random ones."""
    order = list(EpochSeededLengthGroupedSampler(4, LENGTHS, seed=42))
    spread = sum(max(b) - min(b) for b in ([LENGTHS[i] for i in order[k : k + 4]] for k in range(0, 64, 4)))
    shuffled = torch.randperm(64, generator=torch.Generator().manual_seed(0)).tolist()
    random_spread = sum(max(b) - min(b) for b in ([LENGTHS[i] for i in shuffled[k : k + 4]] for k in range(0, 64, 4)))
    assert spread < random_spread / 2


def test_only_the_trainers_length_grouped_sampler_is_replaced():
    stock = LengthGroupedSampler(4, lengths=LENGTHS)
    replaced = seeded(stock, 5)
    assert isinstance(replaced, EpochSeededLengthGroupedSampler)
    assert replaced.batch_size == 4 and replaced.lengths == LENGTHS and replaced.seed == 5
    other = torch.utils.data.SequentialSampler(range(3))
    assert seeded(other, 5) is other and seeded(None, 5) is None
