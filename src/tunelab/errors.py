"""The one exception type users see as a clean one-line message (no traceback)."""


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
