"""Data mixtures (`data.mix`): training rows drawn from several sources by weight, reproducibly.

Each draw picks a source with probability weight / sum of weights; inside a source, rows come in a seeded shuffled
order without replacement, reshuffled when the source runs out, so a small source repeats only when its share asks
for more rows than it holds. When drawing stops (`data.mix_stop`, the `STOPS` registry): after `size` draws, when a
source first runs out (`first_exhausted`: datasets' interleave_datasets rule, LLaMA-Factory's interleave_under), or
once every source has run out at least once (`all_exhausted`: interleave_over); `concat` takes every row of every
source once instead, without weights. The validation rows are held out of
each source before drawing, so none of them is also drawn for training. Pure Python, no torch: replay
(tunelab.continual.replay) takes its reference examples in the same order.
"""
from __future__ import annotations

import bisect
import itertools
import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from tunelab.training.split import split_rows

log = logging.getLogger("tunelab")
MIX_SOURCE = "mix_source"  # on an example while it is loaded: the index of the data.mix source it came from


class Cycle:
    """Indices 0..size-1 in a seeded shuffled order, shuffled again each time they are used up."""

    def __init__(self, size: int, rng: random.Random):
        if size < 1:
            raise ValueError("a mixture source needs at least one row")
        self.size, self.rng, self.order = size, rng, []
        self.exhausted = False  # every index has been given out at least once

    def next(self) -> int:
        if not self.order:
            self.order = list(range(self.size))
            self.rng.shuffle(self.order)
        index = self.order.pop()
        self.exhausted = self.exhausted or not self.order
        return index


def _interleaved(done: Callable[[list[Cycle], int, int], bool]):
    """Random draws by weight until `done(cycles, draws so far, size)`."""
    def picks(sizes: Sequence[int], weights: Sequence[float], seed: int, size: int) -> list[tuple[int, int]]:
        choose = random.Random(seed)
        cycles = [Cycle(n, random.Random(f"{seed}/{number}")) for number, n in enumerate(sizes)]  # one order each
        bounds = list(itertools.accumulate(weights))
        found: list[tuple[int, int]] = []
        while not done(cycles, len(found), size):
            source = min(bisect.bisect_right(bounds, choose.random() * bounds[-1]), len(sizes) - 1)
            found.append((source, cycles[source].next()))
        return found
    return picks


def _concatenated(sizes: Sequence[int], weights: Sequence[float], seed: int, size: int) -> list[tuple[int, int]]:
    return [(source, index) for source, count in enumerate(sizes) for index in range(count)]


# data.mix_stop -> (sizes, weights, seed, size) -> the draws
STOPS: dict[str, Callable[..., list[tuple[int, int]]]] = {
    "size": _interleaved(lambda cycles, drawn, size: drawn >= size),
    "first_exhausted": _interleaved(lambda cycles, drawn, size: any(cycle.exhausted for cycle in cycles)),
    "all_exhausted": _interleaved(lambda cycles, drawn, size: all(cycle.exhausted for cycle in cycles)),
    "concat": _concatenated,  # every row of every source once, no weights (LLaMA-Factory's and axolotl's concat)
}


def draw(sizes: Sequence[int], weights: Sequence[float], seed: int, stop: str = "size",
         size: int | None = None) -> list[tuple[int, int]]:
    """(source, index in the source) for each draw, in draw order; `size` defaults to the sum of `sizes`."""
    return STOPS[stop](sizes, weights, seed, sum(sizes) if size is None else size)


def take(items: Sequence, count: int, seed: int) -> list:
    """`count` items in the seeded order of one source: each item once before any repeats."""
    return [items[index] for _, index in draw([len(items)], [1.0], seed, size=count)]


def tagged(groups: list[list[dict]]) -> list[dict]:
    """The examples of every source in one list, each marked with its source's index."""
    return [{**example, MIX_SOURCE: number} for number, group in enumerate(groups) for example in group]


def by_source(examples: list[dict], count: int) -> list[list[dict]]:
    """`tagged` undone: the examples of each of `count` sources, in order, without the mark."""
    groups: list[list[dict]] = [[] for _ in range(count)]
    for example in examples:
        groups[example[MIX_SOURCE]].append({k: v for k, v in example.items() if k != MIX_SOURCE})
    return groups


@dataclass
class Mixture:
    train: list
    validation: list
    report: dict  # source label -> {"drawn", "available", "validation", "weight"} (summary.json's data_mix)


def mix_rows(groups: list[list], sources: Sequence, stop: str, size: int | None, val_size: float,
             seed: int) -> Mixture:
    """Hold out `val_size` of each source's rows (`held_out`), then draw the training rows from what is left.
    `sources`: the data.mix entries (their `label` and `weight`), one per group."""
    splits = [split_rows(rows, share, seed) for rows, share in zip(groups, held_out(val_size, map(len, groups)))]
    trains = [train for train, _ in splits]
    picks = draw([len(rows) for rows in trains], [source.weight for source in sources], seed, stop, size)
    counts = Counter(source for source, _ in picks)
    total = sum(source.weight for source in sources)
    report = {label: {"drawn": counts[number], "available": len(trains[number]),
                      "validation": len(splits[number][1]), "weight": round(sources[number].weight / total, 6)}
              for number, label in enumerate(_labels(sources))}
    log.info("data.mix (%s): %d rows drawn: %s", stop, len(picks), ", ".join(
        f"{label} {item['drawn']} of {item['available']} (weight {item['weight']:.2f})" for label, item in report.items()))
    return Mixture([trains[source][index] for source, index in picks],
                   [row for _, validation in splits for row in validation], report)


def held_out(val_size: float, sizes) -> list[float]:
    """Each source's part of data.val_size: a fraction holds out that fraction of every source; a count is shared
    in proportion to the sources' sizes (largest remainders), so validation has every source in its proportion."""
    sizes = list(sizes)
    if val_size < 1:
        return [val_size] * len(sizes)
    exact = [val_size * n / max(sum(sizes), 1) for n in sizes]
    counts = [int(share) for share in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda number: counts[number] - exact[number])
    for number in by_remainder[: int(val_size) - sum(counts)]:
        counts[number] += 1
    return [float(count) for count in counts]


def _labels(sources: Sequence) -> list[str]:
    """The sources' labels, numbered where two are the same (the same file twice, with other weights)."""
    labels = [source.label for source in sources]
    return [f"{label} #{number + 1}" if labels.count(label) > 1 else label for number, label in enumerate(labels)]
