"""Which probe questions a fine-tune moved: each question answered or not before (base) and after (tuned).

The forgetting numbers say how much a run forgot; these lists say what. A question counts as answered when
its `contains` score is 100 (the answer holds one of its accepted words), the score the probes are graded by.
Imports no torch, so the run report can read an old run's predictions with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tunelab.data.files import read_records
from tunelab.errors import TunelabError
from tunelab.eval.output import PREDICTIONS

CHANGES = ("kept", "lost", "gained", "never")
KIND_OF = {(True, True): "kept", (True, False): "lost", (False, True): "gained", (False, False): "never"}


def probe_changes(lines: Iterable[dict], source: str = "predictions") -> dict[str, list[str]]:
    """{"kept", "lost", "gained", "never": [question, ...]} of a compare-base eval's predictions lines, in order.

    kept: answered before and after; lost: before only; gained: after only; never: neither.
    """
    changes: dict[str, list[str]] = {kind: [] for kind in CHANGES}
    for number, line in enumerate(lines, start=1):
        before, after = _answered(line, "base_scores", source, number), _answered(line, "scores", source, number)
        changes[KIND_OF[before, after]].append(str(line.get("input", "")))
    return changes


def _answered(line: dict, key: str, source: str, number: int) -> bool:
    scores = line.get(key)
    if not isinstance(scores, dict) or "contains" not in scores:
        raise TunelabError(f"{source} line {number}: no {key}.contains (expected the predictions of an eval with "
                           "--compare-base and the contains metric, as the forgetting probes write)")
    return scores["contains"] == 100


def moved_of(folder: Path) -> tuple[dict[str, list[str]], dict[str, float]]:
    """(probe_changes, base_gaps) of folder/predictions.jsonl (RUN/eval/forgetting/ for a run's probes), read once."""
    path = Path(folder) / PREDICTIONS
    if not path.is_file():
        raise TunelabError(f"{path}: unreadable predictions (no such file)")
    lines = [record for record, _ in read_records(path)]
    return probe_changes(lines, str(path)), base_gaps(lines)


def base_gaps(lines: Iterable[dict]) -> dict[str, float]:
    """{question: base_gap} of the predictions lines that have one (tunelab.eval.firmness: how firmly the base
    answered; lines written before it existed have none)."""
    return {str(line.get("input", "")): float(line["base_gap"]) for line in lines
            if isinstance(line.get("base_gap"), (int, float))}


def with_gap(question: str, gaps: dict[str, float] | None, width: int | None = None) -> str:
    """The question, and how firmly the base answered it where that is known: "<q> (base by 0.012)"."""
    text = clip(question, width) if width else question
    return f"{text} (base by {gaps[question]:.3f})" if gaps and question in gaps else text


def describe_changes(changes: dict[str, list[str]], width: int = 60, gaps: dict[str, float] | None = None) -> str:
    """One log line: "forgetting: kept 7 of 9 probes the base knew; lost: <q1> (base by 0.012); gained: <q3>"."""
    known = len(changes["kept"]) + len(changes["lost"])
    parts = [f"forgetting: kept {len(changes['kept'])} of {known} probes the base knew"]
    if changes["lost"]:
        parts.append("lost: " + "; ".join(with_gap(question, gaps, width) for question in changes["lost"]))
    if changes["gained"]:
        parts.append("gained: " + "; ".join(clip(question, width) for question in changes["gained"]))
    return "; ".join(parts)


def clip(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
