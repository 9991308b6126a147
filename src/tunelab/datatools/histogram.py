"""Token-length histograms: a PNG for files and pages, a few lines of unicode bars for the terminal."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tunelab.data.records import atomic_write

EIGHTHS = " ▏▎▍▌▋▊▉"  # partial blocks: a bar's last cell, in eighths of a character


@dataclass(frozen=True)
class Bucket:
    low: int      # inclusive
    high: int     # inclusive
    count: int
    over: int     # how many of them are longer than max_length


def buckets(lengths: list[int], max_length: int, count: int = 8) -> list[Bucket]:
    """`count` equal-width integer ranges from the shortest to the longest length (fewer when the lengths
    span fewer values)."""
    low = min(lengths)
    width = max(1, math.ceil((max(lengths) - low + 1) / count))
    sizes = Counter((n - low) // width for n in lengths)
    over = Counter((n - low) // width for n in lengths if n > max_length)
    return [Bucket(low + i * width, low + (i + 1) * width - 1, sizes[i], over[i]) for i in range(max(sizes) + 1)]


def bar(fraction: float, width: int) -> str:
    eighths = round(fraction * width * 8)
    return "█" * (eighths // 8) + (EIGHTHS[eighths % 8] if eighths % 8 else "")


def sketch(lengths: list[int], max_length: int, width: int = 40, count: int = 8) -> list[str]:
    """Terminal lines `low–high  bars  count`, with how many in each range training cuts (✂)."""
    rows = buckets(lengths, max_length, count)
    top = max(row.count for row in rows)
    digits = len(str(rows[-1].high))
    lines = []
    for row in rows:
        cut = f"  ✂ {row.over} over max_length" if row.over else ""
        lines.append(f"  {row.low:>{digits}}–{row.high:<{digits}} {bar(row.count / top, width):<{width}} "
                     f"{row.count}{cut}")
    return lines


def write_png(lengths: list[int], max_length: int, path: str | Path, title: str) -> Path:
    """A histogram of token lengths with max_length drawn in when some example reaches it."""
    from matplotlib.figure import Figure  # deferred: slow to import; Figure needs no pyplot global state

    figure = Figure(figsize=(7, 3.5), dpi=100, layout="tight")
    axes = figure.add_subplot()
    axes.hist(lengths, bins=min(40, len(set(lengths))), color="#4c72b0")
    if max(lengths) >= max_length:  # otherwise the line would only stretch the axis
        axes.axvline(max_length, color="#c44e52", linestyle="--", label=f"max_length {max_length}")
        axes.legend()
    axes.set_xlabel("tokens per example (chat template and EOS included)")
    axes.set_ylabel("examples")
    axes.set_title(title)
    path = Path(path)
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
