"""The one exception type users see as a clean one-line message (no traceback)."""


class TunelabError(Exception):
    """An error caused by user input (config, data, paths): printed as one line, exit code 2.

    The message must name the file and line (or config key) and say what was expected.
    """
