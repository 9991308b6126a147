"""The one exception type users see as a clean one-line message (no traceback)."""
from contextlib import contextmanager


class TunelabError(Exception):
    """An error caused by user input (config, data, paths): printed as one line, exit code 2.

    The message must name the file and line (or config key) and say what was expected.
    """

    exit_code = 2
    label = "error"


class Interrupted(TunelabError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint: exit code 128 + the signal number."""

    label = "stopped"

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


@contextmanager
def library_errors(library: str, keys: list[str]):
    """A library's own argument check (a ValueError/TypeError from its config's __post_init__ or its
    constructor) as one line naming the library, its words and the tunelab keys that fed it. A safety net:
    every such check a tunelab config can trigger should be made, in tunelab's terms, when the config is read."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        words = " ".join(str(exc).split()) or type(exc).__name__
        raise TunelabError(f"{library} refused the settings made from {', '.join(keys)}: {words}") from exc
