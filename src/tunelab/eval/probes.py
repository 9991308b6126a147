"""Probe sets graded by keywords: a short question and the words a correct answer contains.

Used by the demo and the slow test to check that a fine-tune learned what it should (held-out
identity questions) without losing what it knew (general-knowledge probes).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunelab.data.loading import BUILTIN_DIR
from tunelab.data.records import atomic_write
from tunelab.serve import ChatEngine, GenerationSettings


@dataclass
class ProbeResult:
    question: str
    expect: list[str]
    base: str
    tuned: str

    @property
    def base_ok(self) -> bool:
        return is_correct(self.base, self.expect)

    @property
    def tuned_ok(self) -> bool:
        return is_correct(self.tuned, self.expect)


def is_correct(answer: str, expect: list[str]) -> bool:
    lowered = answer.lower()
    return any(word.lower() in lowered for word in expect)


def load_probe_set(name: str) -> list[dict]:
    path = BUILTIN_DIR / f"{name}.jsonl" if not name.endswith(".jsonl") else Path(name)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_probes(engine: ChatEngine, probes: list[dict], max_new_tokens: int = 48) -> list[ProbeResult]:
    """Answer every probe with the tuned model and with its base (adapter disabled, same weights)."""
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    conversations = [[{"role": "user", "content": p["instruction"]}] for p in probes]
    tuned = engine.generate(conversations, settings)
    with engine.base_model():
        base = engine.generate(conversations, settings)
    return [ProbeResult(p["instruction"], p["expect"], b, t) for p, b, t in zip(probes, base, tuned)]


PROBES_FILE = "probes.json"


def save_probe_sets(run_dir: Path, sets: dict[str, list[ProbeResult]]) -> Path:
    """RUN/probes.json: each graded question set's base and tuned answers, which the run's report shows."""
    data = [{"title": title, "rows": [{"question": r.question, "expect": r.expect, "base": r.base, "tuned": r.tuned,
                                       "base_ok": r.base_ok, "tuned_ok": r.tuned_ok} for r in results]}
            for title, results in sets.items()]
    path = Path(run_dir) / PROBES_FILE
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def format_side_by_side(title: str, results: list[ProbeResult], width: int = 60) -> str:
    lines = [f"== {title}: base {sum(r.base_ok for r in results)}/{len(results)}, "
             f"tuned {sum(r.tuned_ok for r in results)}/{len(results)} correct =="]
    for r in results:
        lines.append(f"Q: {r.question}")
        lines.append(f"  base  [{'ok' if r.base_ok else '--'}] {_clip(r.base, width)}")
        lines.append(f"  tuned [{'ok' if r.tuned_ok else '--'}] {_clip(r.tuned, width)}")
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width * 2 else text[: width * 2 - 1] + "…"
