"""Recording: a read-only, lazily read EDF / EDF+ / BDF / BDF+ file.

STUB: interface fixed by the skeleton; implementation in progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Channel:
    index: int          # index among the file's signal channels (annotation channels excluded)
    label: str          # label as in the header, stripped
    fs: float           # samples per second
    unit: str           # physical dimension as in the header
    to_uv: float        # multiply physical values by this to get microvolts (1.0 if unknown/non-voltage)


@dataclass(frozen=True)
class Annotation:
    onset_s: float
    duration_s: float
    text: str


class Recording:
    """Open with ``Recording.open(path)``; read with ``read(channel, start_s, stop_s)``."""

    path: Path
    channels: list[Channel]
    start: datetime | None
    duration_s: float         # continuous timeline length (EDF+D: to the end of the last record)
    file_type: str            # "EDF", "EDF+C", "EDF+D", "BDF", "BDF+C", "BDF+D"
    backend: str              # "pyedflib" or "mne"
    annotations: list[Annotation]

    @classmethod
    def open(cls, path: str | Path) -> "Recording":
        raise NotImplementedError

    @property
    def n_epochs(self) -> int:
        raise NotImplementedError

    def channel(self, label: str) -> Channel:
        raise NotImplementedError

    def read(self, channel: int | str, start_s: float, stop_s: float) -> np.ndarray:
        """float32 microvolts on the continuous timeline; samples outside data (gaps) are NaN."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
