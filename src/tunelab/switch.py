"""`switched`: set one attribute on several objects for the length of a block (the switch behind packed
attention and behind the methods that turn their own modules off to give the base model)."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def switched(objects: list, attribute: str, value):
    """Set `attribute` to `value` on every object inside the block; restore each one's own value after."""
    previous = [getattr(obj, attribute) for obj in objects]
    for obj in objects:
        setattr(obj, attribute, value)
    try:
        yield
    finally:
        for obj, old in zip(objects, previous):
            setattr(obj, attribute, old)
