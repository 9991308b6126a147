"""`output:` section — where the run directory goes."""
from pydantic import Field

from tunelab.config.base import Section


class OutputConfig(Section):
    dir: str | None = Field(None, description="Run directory; default runs/<config file name>.")
    overwrite: bool = Field(False, description="Replace a finished run in the same directory.")
