"""What every tab shares: the runs folder, the background job, the loaded chat model."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunelab.ui.chat import ChatModels
from tunelab.ui.form import UI_DIR
from tunelab.ui.jobs import Jobs
from tunelab.ui.runs import RunInfo, find_runs


@dataclass
class UiContext:
    runs_dir: Path
    jobs: Jobs = None
    chat: ChatModels = field(default_factory=ChatModels)

    def __post_init__(self):
        self.runs_dir = Path(self.runs_dir).resolve()
        if self.jobs is None:
            self.jobs = Jobs(self.ui_dir / "logs")

    @property
    def ui_dir(self) -> Path:
        return self.runs_dir / UI_DIR

    def log_of(self, run_name: str) -> Path:
        """The log of a run the UI started (runs started elsewhere printed theirs to their own terminal)."""
        return self.jobs.log_dir / f"{run_name}.log"

    def runs(self) -> list[RunInfo]:
        return find_runs(self.runs_dir)

    def model_choices(self) -> list[str]:
        """Runs with a saved model, then the built-in models: what Chat and Evaluate can load."""
        from tunelab.models.sources import BUILTIN_MODELS

        return [run.name for run in self.runs() if run.has_model] + list(BUILTIN_MODELS)

    def model_path(self, choice: str) -> str:
        """A choice from model_choices (a run's name) or a typed path / hub id, as the CLI's --model."""
        candidate = self.runs_dir / choice
        return str(candidate) if choice and candidate.is_dir() else choice
