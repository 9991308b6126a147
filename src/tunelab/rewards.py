"""Reward functions for GRPO (`train.reward`): built-ins by name, or the user's own code.

Each is called TRL's way, `f(prompts, completions, **columns) -> list[float]`, where completions are
message lists and `columns` holds the data's other columns (the reference answers of `exact_match`).

    length              completion length in characters / 100 (rewards longer answers)
    exact_match         1 when the completion equals the `reference` (or `answer`, `solution`) column
    regex:<pattern>     1 when the pattern is found in the completion
    json_valid          1 when the completion parses as JSON
    python:mod:func     your own function (imported: only named in a config you wrote)
"""
from __future__ import annotations

import importlib
import json
import re
from typing import Callable

from tunelab.errors import TunelabError

REFERENCE_COLUMNS = ("reference", "answer", "solution")


def _text(completion) -> str:
    if isinstance(completion, list):  # conversational: the assistant turn(s)
        return "".join(message.get("content", "") for message in completion)
    return str(completion)


def length(prompts, completions, **columns) -> list[float]:
    return [len(_text(c)) / 100 for c in completions]


def exact_match(prompts, completions, **columns) -> list[float]:
    column = next((name for name in REFERENCE_COLUMNS if name in columns), None)
    if column is None:
        raise TunelabError(f"train.reward exact_match: the data needs a {' / '.join(REFERENCE_COLUMNS)} column")
    return [float(_text(c).strip() == str(ref).strip()) for c, ref in zip(completions, columns[column])]


def json_valid(prompts, completions, **columns) -> list[float]:
    scores = []
    for completion in completions:
        try:
            json.loads(_text(completion))
            scores.append(1.0)
        except ValueError:
            scores.append(0.0)
    return scores


def _regex(pattern: str) -> Callable:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise TunelabError(f"train.reward regex:{pattern}: not a valid regular expression ({exc})") from None

    def regex(prompts, completions, **columns) -> list[float]:
        return [float(compiled.search(_text(c)) is not None) for c in completions]

    regex.__name__ = f"regex:{pattern}"
    return regex


def _python(target: str) -> Callable:
    module_name, _, function_name = target.rpartition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise TunelabError(f"train.reward python:{target}: cannot import it ({exc})") from None
    if not callable(function):
        raise TunelabError(f"train.reward python:{target}: not a function")
    return function


BUILTIN = {"length": length, "exact_match": exact_match, "json_valid": json_valid}
PREFIXED = {"regex": _regex, "python": _python}


def reward_function(spec: str) -> Callable:
    """The function a `train.reward` entry names."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    prefix, _, rest = spec.partition(":")
    if prefix in PREFIXED and rest:
        return PREFIXED[prefix](rest)
    raise TunelabError(f"train.reward: unknown reward {spec!r} (built-ins: {', '.join(BUILTIN)}; "
                       "or regex:<pattern>, python:module:function)")
