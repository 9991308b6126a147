"""A name -> class registry, the one mechanism behind methods, stages (and later more families).

Adding a member is one decorator line in its own module; the core never grows an if/elif on names.
"""
from __future__ import annotations

import difflib
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict, Generic[T]):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str):
        def add(cls: type[T]) -> type[T]:
            cls.name = name
            self[name] = cls
            return cls

        return add

    def check(self, name: str) -> str:
        """Return `name` if registered, else raise ValueError listing the members (for validators)."""
        if name in self:
            return name
        hint = difflib.get_close_matches(name, list(self), n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(f"unknown {self.kind} {name!r}{suggestion} (available: {', '.join(sorted(self))})")
