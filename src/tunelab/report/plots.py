"""Which curves a run has (loss, learning rate, rewards) and drawing them as PNG line plots.

matplotlib is imported inside `save_plot` only: it is the slowest import of a report, and
`import tunelab` must not pay for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.report.rundata import series

MARKER_LIMIT = 30  # sparse curves (eval points) get markers so single points stay visible


@dataclass
class Curve:
    label: str
    steps: list[float]
    values: list[float]
    color: str | None = None  # None: matplotlib's colour cycle
    dashed: bool = False


def _curve(metrics: list[dict], key: str, label: str, **style) -> list[Curve]:
    steps, values = series(metrics, key)
    return [Curve(label, steps, values, **style)] if steps else []


def loss_curves(metrics: list[dict], label: str = "", color: str | None = None) -> list[Curve]:
    """Training loss, and eval loss dashed in the same colour (`label` prefixes both when overlaying runs)."""
    prefix = f"{label} " if label else ""
    return (_curve(metrics, "loss", f"{prefix}train loss", color=color)
            + _curve(metrics, "eval_loss", f"{prefix}eval loss", color=color, dashed=True))


def lr_curves(metrics: list[dict], label: str = "learning rate", color: str | None = None) -> list[Curve]:
    return _curve(metrics, "lr", label, color=color)


def reward_curves(metrics: list[dict], summary: dict) -> list[Curve]:
    """Logged keys naming a reward (TRL's `rewards/margins`...), plus the RL stages' `reward_curve`.

    `reward_curve` has one value per training log line, so it is drawn at those lines' steps. GRPO's
    reward is not in metrics.jsonl (no slash in its key), which is why the summary's copy is needed.
    """
    keys = dict.fromkeys(key for line in metrics for key in line if "reward" in key and not key.startswith("eval_"))
    curves = [curve for key in keys for curve in _curve(metrics, key, key)]
    values = [v for v in summary.get("reward_curve") or [] if isinstance(v, (int, float))]
    train_steps, _ = series(metrics, "loss")
    if values and len(values) == len(train_steps):
        curves.append(Curve("reward_curve", train_steps, values))
    elif values and not curves:  # steps unknown: the x axis is then the n-th logged value, not a step
        curves.append(Curve("reward_curve (x: logged point)", list(range(1, len(values) + 1)), values))
    return curves


def save_plot(path: Path, curves: list[Curve], title: str, ylabel: str, xlabel: str = "step") -> None:
    """One line plot as PNG. An Agg canvas is attached to a bare Figure, so there is no pyplot state:
    no global backend switch, no display, and no figure registry to close (the figure is freed with it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for curve in curves:
        axes.plot(curve.steps, curve.values, label=curve.label, color=curve.color,
                  linestyle="--" if curve.dashed else "-", linewidth=1.5,
                  marker="o" if len(curve.steps) <= MARKER_LIMIT else None, markersize=3)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    if len(curves) > 1:
        axes.legend(fontsize="small")
    figure.savefig(path, format="png")
