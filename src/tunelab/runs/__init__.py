"""Run directories: the on-disk contract of a training run, and loading models from them."""
from tunelab.runs.loading import LoadedModel, RunRef, find_run, load_any, load_run
from tunelab.runs.rundir import STATUS_FAILED, STATUS_FINISHED, STATUS_INTERRUPTED, STATUS_RUNNING, RunDir

__all__ = [
    "LoadedModel", "RunDir", "RunRef", "STATUS_FAILED", "STATUS_FINISHED", "STATUS_INTERRUPTED", "STATUS_RUNNING", "find_run",
    "load_any", "load_run",
]
