"""User-facing errors.

Every problem caused by bad input surfaces as one of these: a single line that names the
file and the problem. The CLI prints ``str(error)`` and exits 2; the GUI shows it in a
dialog. Never let a traceback reach the user for bad input.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input from the user: a file that cannot be read, a bad argument."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)


class RecordingError(InputError):
    """An EDF/BDF recording that cannot be opened or read."""


class StudyError(InputError):
    """A study file that cannot be opened, written or trusted."""


class HypnogramFormatError(InputError):
    """A hypnogram file that cannot be imported or an export that cannot be written."""


class ModelPackError(InputError):
    """A model pack (or a checkpoint to convert into one) that is missing, changed or unusable."""
