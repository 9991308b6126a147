"""The score matrix of a task sequence and what it says (Lopez-Paz & Ranzato, 2017; Chaudhry et al., 2018).

R[i][j] is the score on task j after training task i (row 0: before any training). With T tasks:
- average accuracy: mean of R[T][j] over the tasks, where the sequence ended;
- backward transfer (BWT): mean over j < T of R[T][j] - R[j][j]; negative = forgetting;
- forward transfer (FWT): mean over j > 1 of R[j-1][j] - R[0][j]: what earlier tasks gave a later one for free.
The general probes are an extra column, reported beside them (before -> after), not averaged in.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ScoreMatrix:
    tasks: list[str]         # column names of the tasks (then "probes" when present)
    rows: list[str]          # "before", "after task-1", ...
    scores: list[list[float]]
    probes: bool = True

    def task_scores(self, row: int) -> list[float]:
        return self.scores[row][: len(self.tasks)]

    def summary(self) -> dict:
        last, count = len(self.rows) - 1, len(self.tasks)
        final = self.task_scores(last)
        found = {"average_accuracy": sum(final) / count}
        if count > 1:
            found["backward_transfer"] = sum(final[j] - self.scores[j + 1][j] for j in range(count - 1)) / (count - 1)
            found["forward_transfer"] = sum(self.scores[j][j] - self.scores[0][j] for j in range(1, count)) / (count - 1)
        if self.probes:
            found["probes_before"], found["probes_after"] = self.scores[0][count], self.scores[last][count]
        return found

    def columns(self) -> list[str]:
        return [*self.tasks, "probes"] if self.probes else list(self.tasks)

    def markdown(self) -> str:
        head = "| trained \\ scored | " + " | ".join(self.columns()) + " |"
        lines = [head, "|---|" + "---|" * len(self.columns())]
        lines += [f"| {name} | " + " | ".join(f"{v:.1f}" for v in row) + " |" for name, row in zip(self.rows, self.scores)]
        lines.append("")
        lines += [f"- {key.replace('_', ' ')}: {value:+.1f}" if "transfer" in key else f"- {key.replace('_', ' ')}: "
                  f"{value:.1f}" for key, value in self.summary().items()]
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict:
        return {"columns": self.columns(), "rows": self.rows, "scores": self.scores, **self.summary()}


def heatmap(matrix: ScoreMatrix, path: Path, title: str = "score after each task") -> None:
    """The matrix as a PNG heat-map with the values written in the cells (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = matrix.columns()
    figure = Figure(figsize=(1.6 + 1.3 * len(columns), 1.2 + 0.6 * len(matrix.rows)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix.scores, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    axes.set_xticks(range(len(columns)), columns, rotation=20, ha="right")
    axes.set_yticks(range(len(matrix.rows)), matrix.rows)
    axes.set(title=title, xlabel="scored on", ylabel="after")
    for i, row in enumerate(matrix.scores):
        for j, value in enumerate(row):
            axes.text(j, i, f"{value:.0f}", ha="center", va="center", color="white" if value < 60 else "black")
    figure.colorbar(image, ax=axes, fraction=0.05)
    figure.savefig(path, format="png")
