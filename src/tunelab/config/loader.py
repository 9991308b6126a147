"""YAML file + dotted command-line overrides -> one validated RunConfig, or one clear error line.

Errors name the file, the line of the offending key, the key path and what was expected, and
suggest the closest valid key for typos.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunelab.config.run import RunConfig
from tunelab.errors import TunelabError


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML config, apply `section.key=value` overrides, validate into a RunConfig."""
    return read_config(path, overrides)[0]


def read_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()):
    """(RunConfig, the Translation when the file is another tool's config, else None). A LLaMA-Factory or axolotl
    file is translated first (config.foreign); overrides are tunelab keys, applied to the translation."""
    from tunelab.config.foreign import check, detect, target_lines, translate

    path = Path(path)
    raw, lines = _read_yaml(path)
    translation, dialect = None, detect(raw)
    if dialect is not None:
        translation = translate(raw, dialect, str(path), lines)
        check(translation)
        raw, lines = copy.deepcopy(translation.config), target_lines(translation)
    overridden = {_apply_override(raw, item): item for item in overrides}
    config = validate(raw, source=str(path), lines=lines, overrides=overridden)
    if config.output.dir is None:
        config.output.dir = str(Path("runs") / path.stem)
    return config, translation


def validate(raw: dict, source: str = "config", lines: dict[tuple, int] | None = None, schema=RunConfig,
             overrides: dict[tuple, str] | None = None, written: bool = True):
    """`lines`: key path -> line in `source`; `overrides`: key path -> the command-line override that set it
    (an error in an overridden value names the override, not the file line the value no longer comes from).
    `written`: `raw` is what a user wrote, so keys the chosen method or stage does not read are refused
    (config.reads); False for a run directory's stored config, which holds every key."""
    try:
        config = schema.model_validate(raw)
    except ValidationError as exc:
        raise TunelabError(_describe(exc, source, lines or {}, overrides or {})) from None
    if written and schema is RunConfig:
        from tunelab.config.reads import unread_key_problems

        problems = unread_key_problems(raw, config)
        if problems:
            raise TunelabError("; ".join(f"{_where(loc, source, lines or {}, overrides or {})}: {message}"
                                         for loc, message in problems))
    return config


def is_sequence(path: str | Path) -> bool:
    """A sequence file names its tasks in continual.tasks (and has no data of its own)."""
    raw, _ = _read_yaml(Path(path))
    continual = raw.get("continual")
    return isinstance(continual, dict) and bool(continual.get("tasks"))


def load_sequence(path: str | Path, overrides: list[str] | tuple[str, ...] = ()):
    """Read and validate a sequence file; task paths are resolved against the file's folder."""
    from tunelab.config.sequence import SequenceConfig

    path = Path(path)
    raw, lines = _read_yaml(path)
    overridden = {_apply_override(raw, item): item for item in overrides}
    config = validate(raw, source=str(path), lines=lines, schema=SequenceConfig, overrides=overridden)
    config.continual.tasks = [str((path.parent / task).resolve()) if not Path(task).is_absolute() else task
                              for task in config.continual.tasks]
    if config.output.dir is None:
        config.output.dir = str(Path("runs") / path.stem)
    return config


def _read_yaml(path: Path) -> tuple[dict, dict[tuple, int]]:
    if not path.is_file():
        raise TunelabError(f"{path}: no such config file (looked in {path.resolve().parent})")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise TunelabError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        raise TunelabError(f"{path}: config file is empty (expected sections model, data, method, train, output)")
    if not isinstance(data, dict):
        raise TunelabError(f"{path}: expected a mapping of sections at the top level")
    lines: dict[tuple, int] = {}
    _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: Any, prefix: tuple, out: dict[tuple, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (key_node.value,)
            out[key] = key_node.start_mark.line + 1
            _collect_lines(value_node, key, out)


def _apply_override(raw: dict, item: str) -> tuple:
    """Set the value of one `section.key=value` override in `raw`; returns the key path it set."""
    key, sep, value = item.partition("=")
    if not sep or not key or "." not in key:
        raise TunelabError(f"override {item!r}: expected section.key=value (e.g. train.lr=1e-4)")
    parts = key.strip().split(".")
    target = raw
    for part in parts[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise TunelabError(f"override {item!r}: {part!r} is not a section")
        target = child
    try:
        target[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        target[parts[-1]] = value
    return tuple(parts)


def _describe(exc: ValidationError, source: str, lines: dict, overrides: dict) -> str:
    """One line per problem (usually one): `file:line: key.path: what was expected`."""
    problems: dict[tuple, list[str]] = {}
    for error in exc.errors():
        loc = _without_branch(tuple(str(p) for p in error["loc"]))
        problems.setdefault(loc, []).append(_explain(error, loc))
    messages = []
    for loc, explained in problems.items():
        key = ".".join(loc)
        prefix = f"{key}: " if key else ""  # checks across sections name their keys in the message itself
        messages.append(f"{_where(loc, source, lines, overrides)}: {prefix}{', or '.join(_dedup_got(explained))}")
    return "; ".join(messages)


def _without_branch(loc: tuple) -> tuple:
    """pydantic names the member of a union a value failed (`train.piece_tokens.constrained-int`,
    `...literal['auto']`): the key is the field itself, and its members' messages go on one line."""
    leaf = len(loc) >= 2 and loc[-2] in _fields_at(loc[:-2]) and not _fields_at(loc[:-1])
    if leaf and not loc[-1].isdigit():  # below a plain field only a list index or a union member can follow
        return loc[:-1]
    return loc


def _dedup_got(messages: list[str]) -> list[str]:
    """The union members' messages each end with the same "(got X)": said once, at the end."""
    tails = {m[m.rfind(" (got "):] for m in messages if " (got " in m}
    if len(messages) < 2 or len(tails) != 1:
        return messages
    tail = tails.pop()
    return [m.removesuffix(tail) for m in messages[:-1]] + [messages[-1]]


def _where(loc: tuple, source: str, lines: dict, overrides: dict) -> str:
    """`override 'train.lr=0'` when the value came from the command line, else `file:line` (or the file)."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in overrides:
            return f"override {overrides[loc[:end]]!r}"
    line = _line_of(loc, lines)
    return f"{source}:{line}" if line else source


def _line_of(loc: tuple, lines: dict) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def _explain(error: dict, loc: tuple) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _fields_at(loc[:-1])
        hint = difflib.get_close_matches(loc[-1], valid, n=1)
        suggestion = f"; did you mean {'.'.join(loc[:-1] + (hint[0],))!r}?" if hint else ""
        return f"unknown key{suggestion} (valid keys here: {', '.join(valid)})"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    if kind != "value_error" and not isinstance(got, (dict, list)):
        message += f" (got {got!r})"
    return message


def _fields_at(loc: tuple) -> list[str]:
    model: type[BaseModel] = RunConfig
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (saved in every run directory)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
