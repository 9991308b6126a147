"""How `tunelab data inspect` presents what it found: terminal text and an HTML page.

Trained tokens must stay visible without colour (logs, pipes, NO_COLOR), so plain text brackets them.
"""
from __future__ import annotations

import base64
import html
import os
import statistics
from pathlib import Path
from typing import TextIO

from tunelab.config import RunConfig
from tunelab.datatools.histogram import sketch
from tunelab.datatools.inspect import InspectReport, Shown
from tunelab.data.records import KINDS, atomic_write

TRAINED_ANSI, MASKED_ANSI, RESET = "\x1b[32m", "\x1b[2m", "\x1b[0m"
OPEN, CLOSE = "⟦", "⟧"
LISTED = 10  # sources listed per finding before "... and N more"


def colour_enabled(stream: TextIO) -> bool:
    """Colours only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def marked_text(segments: list[tuple[str, bool]], colour: bool) -> str:
    """Trained pieces green and masked ones dim, or trained pieces in ⟦…⟧ without colour."""
    if not colour:
        return "".join(f"{OPEN}{text}{CLOSE}" if trained else text for text, trained in segments)
    return "".join(_paint(text, TRAINED_ANSI if trained else MASKED_ANSI) for text, trained in segments)


def _paint(text: str, code: str) -> str:
    """Codes per line, so pagers that reset colours at each line (less -R) keep them."""
    return "\n".join(f"{code}{line}{RESET}" if line else "" for line in text.split("\n"))


def legend(colour: bool) -> str:
    if colour:
        return f"{TRAINED_ANSI}green: trained{RESET}, {MASKED_ANSI}dim: masked (no loss){RESET}"
    return f"{OPEN}…{CLOSE}: trained tokens; the rest is masked (no loss)"


def summary_lines(config: RunConfig, report: InspectReport) -> list[str]:
    """The numbers: what was read, how long it is, what training cuts, and what looks wrong."""
    lengths = report.lengths
    stats = report.stats
    template = config.data.template or "the tokenizer's own"
    lines = [
        f"data {config.data.label}: {report.examples} examples -> train.stage {config.train.stage}, "
        f"model {config.model.path}, template {template}, max_length {report.max_length}",
        "by format: " + ", ".join(f"{KINDS.get(kind, kind)} {n}" for kind, n in report.kinds.most_common()),
        "by file:",
        *(f"  {name}  {n}" for name, n in report.files.most_common()),
        f"token lengths: min {min(lengths)}, median {statistics.median(lengths):g}, "
        f"mean {statistics.fmean(lengths):.1f}, max {max(lengths)}",
        *sketch(lengths, report.max_length),
        f"truncated at max_length {report.max_length}: {stats.truncated} of {report.examples} "
        f"({100 * report.truncation_rate:.1f}%); dropped with nothing left to train: {stats.dropped}",
        f"tokens: {stats.tokens} in training rows, {stats.trained_tokens} trained "
        f"({100 * stats.trained_tokens / max(stats.tokens, 1):.1f}%)",
        f"duplicates: {report.duplicate_count} (the same example up to whitespace)",
        *_listed([" = ".join(group) for group in report.duplicates]),
        f"empty answers: {len(report.empty_answers)} (an assistant turn with no text)",
        *_listed(report.empty_answers),
    ]
    if report.duplicate_count or report.empty_answers:
        lines.append("  `tunelab data clean INPUT --output OUT.jsonl` writes a copy without them")
    return lines + _reasoning_lines(config, report)


def _reasoning_lines(config: RunConfig, report: InspectReport) -> list[str]:
    """Whether reasoning is trained and how tools are rendered: what decides what the model learns to write."""
    data, lines = config.data, []
    if report.reasoning_answers:
        how = ("dropped (data.thinking: drop)" if data.thinking == "drop" else
               "trained" if data.train_thinking else "kept as context, not trained (data.train_thinking: false)")
        lines.append(f"reasoning: {report.reasoning_answers} answers carry reasoning: {how}; "
                     "an empty think block is never trained")
    if report.enable_thinking is not None:
        lines.append(f"enable_thinking: {str(report.enable_thinking).lower()} (the template's switch, saved with the run)")
    if report.tool_examples:
        how = "by the template (tools=, tool role, tool_calls)" if report.tools_native else \
            "as <tool_call>/<tool_response> text: the template has no tool support"
        lines.append(f"tools: {report.tool_examples} conversations use tools, rendered {how}")
    return lines


def _listed(items: list[str]) -> list[str]:
    lines = [f"  {item}" for item in items[:LISTED]]
    return lines + ([f"  ... and {len(items) - LISTED} more"] if len(items) > LISTED else [])


def shown_lines(shown: list[Shown], colour: bool) -> list[str]:
    lines = [legend(colour)] if shown else []
    for number, example in enumerate(shown, start=1):
        note = f" ({example.note})" if example.note else ""
        lines += [f"--- example {number}: {example.source}{note}", marked_text(example.segments, colour).rstrip("\n")]
    return lines


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
pre {{ white-space: pre-wrap; background: #fafafa; border: 1px solid #ddd; padding: 0.8em; }}
.trained {{ background: #b7f0b1; }}
.masked {{ color: #666; }}
</style></head><body>
<h1>{title}</h1>
<pre>{summary}</pre>
{image}
<p><span class="trained">highlighted</span>: trained tokens; grey: masked (no loss).</p>
{examples}
</body></html>
"""


def html_page(title: str, summary: list[str], shown: list[Shown], png: Path | None = None) -> str:
    """A self-contained page (the histogram is embedded); every piece of data text is escaped."""
    image = ""
    if png is not None:
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        image = f'<img alt="token length histogram" src="data:image/png;base64,{data}">'
    examples = "\n".join(
        f"<h2>{html.escape(example.source)}</h2>"
        + (f"<p>{html.escape(example.note)}</p>" if example.note else "")
        + "<pre>" + "".join(f'<span class="{"trained" if trained else "masked"}">{html.escape(text)}</span>'
                            for text, trained in example.segments) + "</pre>"
        for example in shown)
    return PAGE.format(title=html.escape(title), summary=html.escape("\n".join(summary)), image=image,
                       examples=examples)


def write_html(path: str | Path, page: str) -> Path:
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
