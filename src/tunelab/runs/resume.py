"""Where a run starts: an empty run directory, or the newest complete checkpoint of an earlier attempt.

`train.resume: true` continues in output.dir; `train.resume: PATH` continues from that checkpoint folder.
A resumed run must be the same run: settings that change what the steps compute are compared with the
earlier attempt's config.yaml, and a difference is refused (naming the keys) rather than silently mixed.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from tunelab.config.keys import free_keys

from tunelab.data.records import atomic_write
from tunelab.errors import TunelabError
from tunelab.runs.checkpoints import drop_incomplete, is_complete, latest_complete, step_of
from tunelab.runs.rundir import STATUS_FINISHED, RunDir

log = logging.getLogger("tunelab")



@dataclass
class Start:
    checkpoint: Path | None = None  # resume from here; None: from step 0
    finished: bool = False          # the run already finished: nothing to do


def start_run(run: RunDir, config) -> Start:
    """Prepare output.dir for this run and say where training starts."""
    resume = config.train.resume
    if resume is False:
        run.prepare(config.output.overwrite)
        return Start()
    if resume is True:
        return _resume_in_place(run, config)
    return _resume_from(run, config, Path(resume))


def follow_start(run: RunDir, config) -> Start:
    """Where ranks other than 0 start, read after rank 0's start_run has prepared the directory."""
    resume = config.train.resume
    if resume is False:
        return Start()
    if resume is True:
        if run.status() == STATUS_FINISHED:
            return Start(finished=True)
        return Start(latest_complete(run.path) if run.path.is_dir() else None)
    return Start(Path(resume))


def _resume_in_place(run: RunDir, config) -> Start:
    if run.status() == STATUS_FINISHED:
        log.info("output.dir %s: this run already finished; nothing to resume", run.path)
        return Start(finished=True)
    if run.path.is_dir() and any(run.path.iterdir()) and run.status() is None:
        raise TunelabError(f"output.dir {run.path}: exists and is not a tunelab run; choose another")
    if run.path.is_dir():
        drop_incomplete(run.path)
    checkpoint = latest_complete(run.path) if run.path.is_dir() else None
    if checkpoint is None:
        log.info("train.resume: no complete checkpoint in %s; starting from step 0", run.path)
        run.prepare(overwrite=True)
        return Start()
    _check_same_run(run.config, config)
    _truncate_metrics(run, step_of(checkpoint))
    log.info("resumed from %s", checkpoint.name)
    return Start(checkpoint)


def _resume_from(run: RunDir, config, checkpoint: Path) -> Start:
    if not checkpoint.is_dir():
        raise TunelabError(f"train.resume: {checkpoint} is not a directory (expected a checkpoint-N folder or true)")
    if not is_complete(checkpoint):
        raise TunelabError(f"train.resume: {checkpoint} was not completely written (no {checkpoint.name}/"
                           "tunelab_complete.json); choose an earlier checkpoint")
    earlier = checkpoint.parent / "config.yaml"
    if earlier.is_file():
        _check_same_run(earlier, config)
    if checkpoint.resolve().parent != run.path.resolve():
        run.prepare(config.output.overwrite)
    else:
        _truncate_metrics(run, step_of(checkpoint))
    log.info("resumed from %s", checkpoint)
    return Start(checkpoint)


def _check_same_run(earlier_config: Path, config) -> None:
    try:
        before = _flat(yaml.safe_load(earlier_config.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError) as exc:
        raise TunelabError(f"{earlier_config}: unreadable ({exc}); cannot check that the resumed run is the same"
                           ) from None
    now = _flat(config.model_dump(mode="json"))
    # A key the earlier config lacks comes from a newer tunelab (its default applies): not a change.
    free = free_keys()  # where and how the run is logged and saved, not what a step computes (the schema says)
    changed = sorted(key for key in before.keys() & now.keys()
                     if before[key] != now[key] and not any(key == f or key.startswith(f"{f}.") for f in free))
    if changed:
        shown = ", ".join(f"{key} ({before.get(key)!r} -> {now.get(key)!r})" for key in changed[:5])
        raise TunelabError(f"train.resume: the config differs from the run being resumed ({earlier_config}) in "
                           f"{shown}; resume with the same settings, or start a new run "
                           "(model.path=<that run> continues from its result)")


def _flat(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    flat: dict = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def _truncate_metrics(run: RunDir, step: int) -> None:
    """metrics.jsonl keeps the lines up to the checkpoint: the resumed run logs the later steps again."""
    if not run.metrics.is_file():
        return
    kept = []
    for line in run.metrics.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
    with atomic_write(run.metrics) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
