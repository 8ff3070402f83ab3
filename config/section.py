"""What every settings section shares."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict


def expand_home(path: Path | None) -> Path | None:
    """`~` in a path from YAML or env is not expanded by pydantic; expand it once, here."""
    return path.expanduser() if path is not None else None


class Section(BaseModel):
    """A settings section: unknown keys are errors, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid")
