"""Run reports: one run's HTML page with PNG curves (`write_report`), or several runs side by side
(`compare_runs`). Both read only the run directory's files, so they work on any finished run."""
from tunelab.report.compare import compare_runs
from tunelab.report.page import write_report

__all__ = ["compare_runs", "write_report"]
