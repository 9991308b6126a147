"""The run directory contract (later issues and users rely on these names).

RUN/config.yaml        resolved config            RUN/status            running | finished | failed | interrupted
RUN/model/             adapter or full weights + tokenizer + the chat template used (appears whole, by rename)
RUN/checkpoint-N/      Trainer checkpoints; complete when checkpoint-N/tunelab_complete.json exists
RUN/metrics.jsonl      one JSON line per log step
RUN/summary.json       final numbers               RUN/provenance.json   versions, hashes, base model
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tunelab.errors import TunelabError

STATUS_RUNNING, STATUS_FINISHED, STATUS_FAILED = "running", "finished", "failed"
STATUS_INTERRUPTED = "interrupted"  # stopped by SIGINT/SIGTERM after saving a checkpoint: resumable
WEIGHT_PATTERNS = ("model", ".model.*", "checkpoint-*", "tensorboard")


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    model_dir = property(lambda self: self.path / "model")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    provenance_path = property(lambda self: self.path / "provenance.json")
    status_path = property(lambda self: self.path / "status")
    staging_path = property(lambda self: self.path / ".model.partial")  # the final model while it is written

    @staticmethod
    def is_run(path: Path) -> bool:
        return (path / "config.yaml").is_file() and (path / "provenance.json").is_file()

    def status(self) -> str | None:
        return self.status_path.read_text(encoding="utf-8").strip() if self.status_path.is_file() else None

    def prepare(self, overwrite: bool) -> None:
        """Refuse to clobber a finished run unless asked; otherwise start from an empty run dir."""
        if self.path.exists() and any(self.path.iterdir()):
            if self.status() == STATUS_FINISHED and not overwrite:
                raise TunelabError(
                    f"output.dir {self.path}: holds a finished run; set output.overwrite=true to replace it, "
                    "train.resume=true to keep it (a finished run is left as it is), or choose another output.dir"
                )
            if not overwrite and self.status() is None:
                raise TunelabError(f"output.dir {self.path}: exists and is not a tunelab run; choose another")
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    def set_status(self, status: str) -> None:
        self.status_path.write_text(status + "\n", encoding="utf-8")

    def write_json(self, path: Path, data: dict) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)

    def read_json(self, path: Path) -> dict:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise TunelabError(f"{path}: unreadable run file ({exc})") from None

    def remove_weights(self) -> None:
        """A run that failed before its first step leaves no weights or checkpoints behind."""
        for pattern in WEIGHT_PATTERNS:
            for item in self.path.glob(pattern):
                shutil.rmtree(item, ignore_errors=True)

    def staging_model_dir(self) -> Path:
        """An empty folder to write the final model into; `install_model` then makes it RUN/model/."""
        staging = self.staging_path
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        return staging

    def install_model(self, staging: Path) -> None:
        """Rename the finished staging folder to RUN/model/: readers never see a half-written model."""
        old = self.path / ".model.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.model_dir.exists():
            self.model_dir.replace(old)
        staging.replace(self.model_dir)
        shutil.rmtree(old, ignore_errors=True)
