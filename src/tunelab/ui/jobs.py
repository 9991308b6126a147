"""The UI runs the CLI, never the library: each action is `python -m tunelab ...` in a subprocess, so what
the page does and what `tunelab` does on the command line cannot differ.

Training runs in the background (one at a time: on a CPU two runs would only slow each other down), its
output going to RUNS/.ui/logs/<run>.log. Plan, inspect and eval run to completion while the page waits.
A stop is SIGTERM, which the CLI turns into "save a checkpoint, then exit".
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.errors import TunelabError

ERROR_LABELS = ("error:", "stopped:", "interrupted")


def cli_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "tunelab", *args]


def _environment() -> dict[str, str]:
    # Unbuffered, so the log shows each line as it is printed, not in blocks of 8 KB.
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def message(self) -> str:
        """What went wrong, as the CLI said it (its `error:` line), for the page."""
        return problem(self.stderr, self.returncode)


def run_cli(args: list[str]) -> CliResult:
    """Run one CLI command to completion, capturing what it prints."""
    done = subprocess.run(cli_command(args), capture_output=True, text=True, env=_environment())
    return CliResult(args, done.returncode, done.stdout, done.stderr)


def problem(output: str, returncode: int) -> str:
    """The CLI's own one-line message (`error: ...`, `stopped: ...`), or the end of its output when it died
    without one (a crash: the traceback's last line names the exception)."""
    lines = [line.strip() for line in output.replace("\r", "\n").splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(ERROR_LABELS)]
    if said:
        return said[-1]
    if returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    tail = lines[-1] if lines else "no output"
    return f"exit code {returncode}: {tail}"


@dataclass
class Job:
    """One background CLI process (a training run) and the log its output goes to."""
    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen
    started: float = field(default_factory=time.time)
    stop_requested: bool = False

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    @property
    def running(self) -> bool:
        return self.returncode is None

    def state(self) -> str:
        code = self.returncode
        if code is None:
            return "stopping" if self.stop_requested else "running"
        return "finished" if code == 0 else "stopped" if self.stop_requested else "failed"

    def message(self) -> str:
        """'' while running or after success; the CLI's error or stop line otherwise."""
        code = self.returncode
        if code in (None, 0):
            return ""
        return problem(tail(self.log, 200), code)

    def stop(self) -> None:
        """SIGTERM: the CLI finishes the step, saves a checkpoint and exits (resume continues from it)."""
        if self.running:
            self.stop_requested = True
            self.process.send_signal(signal.SIGTERM)


class Jobs:
    """The background training job, at most one at a time."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.current: Job | None = None
        self._lock = threading.Lock()

    def start(self, name: str, args: list[str]) -> Job:
        with self._lock:
            if self.current is not None and self.current.running:
                raise TunelabError(f"run {self.current.name!r} is still going; stop it or wait for it to finish")
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_dir / f"{name}.log"
            with log.open("w", encoding="utf-8") as out:
                out.write(f"$ tunelab {' '.join(args)}\n")
                out.flush()
                # A session of its own: Ctrl-C in the UI's terminal does not also hit the run (shutdown() stops it).
                process = subprocess.Popen(cli_command(args), stdout=out, stderr=subprocess.STDOUT, env=_environment(),
                                           start_new_session=True)
            self.current = Job(name, args, log, process)
            return self.current

    def job(self, name: str) -> Job | None:
        return self.current if self.current is not None and self.current.name == name else None

    def stop(self) -> str:
        job = self.current
        if job is None or not job.running:
            return "no run is going"
        job.stop()
        return f"stopping {job.name}: it saves a checkpoint at the end of this step, then exits"

    def shutdown(self, grace: float = 30.0) -> None:
        """When the UI exits: stop the run (a checkpoint is saved), and kill it if it does not end in time."""
        job = self.current
        if job is None or not job.running:
            return
        job.stop()
        try:
            job.process.wait(grace)
        except subprocess.TimeoutExpired:
            job.process.kill()


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log; progress bars redraw with carriage returns, so only each line's last state
    is kept."""
    if not path.is_file():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 256 * 1024))
        text = handle.read().decode("utf-8", errors="replace")
    kept = [next((part for part in reversed(line.split("\r")) if part.strip()), "") for line in text.split("\n")]
    return "\n".join(line for line in kept[-lines - 1:] if line.strip())
