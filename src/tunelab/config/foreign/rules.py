"""How one key of a foreign config (LLaMA-Factory, axolotl) becomes tunelab's: mapped onto tunelab keys, ignored
with a stated reason, or refused with the reason. A key with no rule is refused too, so a key the other tool adds
in a new release is never dropped in silence.

Each dialect is a dict `key -> Rule`; `Translator` walks the user's keys, applies the rules into a nested tunelab
config (plain dict, validated afterwards by the usual loader) and keeps one `Row` per key for the table printed
before training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

MAPPED, IGNORED, REFUSED, DEFAULT = "mapped", "ignored", "refused", "default"


@dataclass
class Row:
    key: str
    value: Any
    outcome: str             # MAPPED, IGNORED, REFUSED, or DEFAULT (the other tool's default, written out)
    detail: str = ""         # "train.lr = 0.0001" or the reason
    line: int | None = None  # where the key is in the foreign file
    targets: list[str] = field(default_factory=list)  # the dotted tunelab keys it set


class Context:
    """What a rule sees: the user's whole foreign config (for keys that only mean something together) and the
    tunelab config being built."""

    def __init__(self, raw: dict):
        self.raw = raw
        self.out: dict = {}
        self.assigned: list[tuple[str, Any]] = []  # (dotted tunelab key, value) set by the rule running now

    def set(self, dotted: str, value: Any) -> None:
        target = self.out
        *sections, last = dotted.split(".")
        for section in sections:
            target = target.setdefault(section, {})
        target[last] = value
        self.assigned.append((dotted, value))

    def get(self, key: str, default: Any = None) -> Any:
        value = self.raw.get(key)
        return default if value is None else value


class Rule:
    outcome = MAPPED

    def apply(self, value: Any, ctx: Context) -> str:
        """What became of the key (shown in the table): the tunelab keys set, or the reason."""
        raise NotImplementedError


@dataclass
class To(Rule):
    """One tunelab key, the value converted by `convert` (identity by default)."""
    target: str
    convert: Callable[[Any], Any] | None = None
    note: str = ""

    def apply(self, value, ctx):
        ctx.set(self.target, self.convert(value) if self.convert else value)
        return self.note


@dataclass
class Via(Rule):
    """A function that reads the value (and, where keys only mean something together, the rest of the config) and
    sets tunelab keys with `ctx.set`; it raises `Unsupported` for a value tunelab cannot honour."""
    function: Callable[[Any, Context], str | None]

    def apply(self, value, ctx):
        return self.function(value, ctx) or ""


@dataclass
class Together(Rule):
    """Read by the rule of another key (`finetuning_type` reads `use_dora`): nothing to do on its own."""
    with_key: str

    def apply(self, value, ctx):
        return f"with {self.with_key}"


@dataclass
class Ignore(Rule):
    reason: str
    outcome: str = IGNORED

    def apply(self, value, ctx):
        return self.reason


@dataclass
class Refuse(Rule):
    """Something tunelab cannot honour. `unless`: values that ask for nothing (the other tool's default, or off), which
    are ignored instead."""
    reason: str
    unless: tuple = (None, False)
    holds: str = "off: nothing to do"  # shown when the value is one of `unless`
    outcome: str = REFUSED

    def apply(self, value, ctx):
        return self.reason


class Unsupported(Exception):
    """Raised by a `Via` function for a value it cannot translate; the key is refused with this message."""


@dataclass
class Translation:
    dialect: str
    source: str
    config: dict                      # the tunelab config (raw, to be validated by the loader)
    rows: list[Row] = field(default_factory=list)

    @property
    def refused(self) -> list[Row]:
        return [row for row in self.rows if row.outcome == REFUSED]

    def table(self) -> str:
        """The translation as a text table: one line per key of the foreign file, then the defaults written out."""
        width = max((len(row.key) for row in self.rows), default=3)
        shown = max(min(max((len(_short(row.value)) for row in self.rows), default=5), 28), 5)
        lines = [f"{self.dialect} config {self.source} -> tunelab", f"{'key':<{width}}  {'value':<{shown}}  "
                 f"{'outcome':<8}  tunelab"]
        for row in self.rows:
            lines.append(f"{row.key:<{width}}  {_short(row.value):<{shown}}  {row.outcome:<8}  {row.detail}")
        return "\n".join(lines)


def _short(value: Any, limit: int = 28) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def apply_rules(raw: dict, rules: dict[str, Rule], ctx: Context, lines: dict[str, int]) -> list[Row]:
    """One Row per key of `raw`, in the file's order."""
    rows = []
    for key, value in raw.items():
        rule = rules.get(key)
        ctx.assigned = []
        if rule is None:
            rows.append(Row(key, value, REFUSED, "not a key tunelab knows for this tool: check its spelling, or "
                            "leave it out (tunelab refuses keys it cannot account for)", lines.get(key)))
            continue
        if value is None and not isinstance(rule, Refuse):  # `key:` with nothing after it: the tool's default
            rows.append(Row(key, value, IGNORED, "empty: the default", lines.get(key)))
            continue
        if isinstance(rule, Refuse) and value in rule.unless:
            rows.append(Row(key, value, IGNORED, rule.holds, lines.get(key)))
            continue
        try:
            note = rule.apply(value, ctx)
        except Unsupported as exc:
            rows.append(Row(key, value, REFUSED, str(exc), lines.get(key)))
            continue
        rows.append(_row(key, value, rule, note, ctx, lines.get(key)))
    return rows


def _row(key: str, value: Any, rule: Rule, note: str, ctx: Context, line: int | None, outcome: str | None = None) -> Row:
    shown = ", ".join(f"{dotted} = {item!r}" for dotted, item in ctx.assigned)
    detail = shown + (f" ({note})" if note and shown else note)
    if outcome is None:  # a rule that set nothing (a value that asks for what tunelab does anyway) is ignored
        outcome = IGNORED if rule.outcome == MAPPED and not ctx.assigned and not isinstance(rule, Together) else rule.outcome
    return Row(key, value, outcome, detail, line, [dotted for dotted, _ in ctx.assigned])


def apply_implied(implied: dict[str, Any], raw: dict, rules: dict[str, Rule], ctx: Context) -> list[Row]:
    """Keys whose rule runs with the other tool's default when the file leaves them out (LLaMA-Factory's
    finetuning_type lora still means lora_alpha = 2 x rank)."""
    rows = []
    for key, value in implied.items():
        if key in raw:
            continue
        ctx.assigned = []
        try:
            note = rules[key].apply(value, ctx)
        except Unsupported as exc:
            rows.append(Row(f"({key})", value, REFUSED, str(exc)))
            continue
        rows.append(_row(f"({key})", value, rules[key], note, ctx, None, DEFAULT))
    return rows


def apply_defaults(defaults: dict[str, tuple[str, Any, str]], raw: dict, ctx: Context) -> list[Row]:
    """The other tool's defaults that differ from tunelab's, for keys the user left out: `key -> (tunelab key,
    value, why)`. Written out so the run trains what the same file trains there."""
    rows = []
    for key, (target, value, why) in defaults.items():
        if key in raw or _is_set(ctx.out, target):
            continue
        ctx.set(target, value)
        rows.append(Row(f"({key})", value, DEFAULT, f"{target} = {value!r} ({why})", targets=[target]))
    return rows


def _is_set(out: dict, dotted: str) -> bool:
    target = out
    for part in dotted.split("."):
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return True
