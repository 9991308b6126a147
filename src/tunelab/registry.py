"""A name -> class registry, the one mechanism behind methods, stages (and later more families).

Adding a member is one decorator line in its own module; the core never grows an if/elif on names.
"""
from __future__ import annotations

import difflib
from typing import Generic, TypeVar

from tunelab.specs.base import adopt

T = TypeVar("T")


class Registry(dict, Generic[T]):
    def __init__(self, kind: str, specs: "Registry | None" = None):
        super().__init__()
        self.kind = kind
        self.specs = specs  # implementations: the light registry of what each member is (tunelab.specs)

    def register(self, name: str):
        def add(cls: type[T]) -> type[T]:
            cls.name = name
            if self.specs is not None:
                if name not in self.specs:
                    raise LookupError(f"{self.kind} {name!r} is implemented but has no spec in tunelab.specs")
                adopt(cls, self.specs[name])
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
