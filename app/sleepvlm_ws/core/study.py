"""Study: one SQLite file per study holding the montage, every epoch's current stage,
every decision and the hash-chained audit trail.

STUB: interface fixed by the skeleton; implementation in progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .montage import Montage
from .stages import Stage

STUDY_SUFFIX = ".sleepvlm"

# Decision sources
MANUAL = "manual"
AI_ACCEPTED = "ai_accepted"
AI_OVERRIDDEN = "ai_overridden"
IMPORTED = "imported"
UNDO = "undo"
SOURCES = (MANUAL, AI_ACCEPTED, AI_OVERRIDDEN, IMPORTED, UNDO)


@dataclass(frozen=True)
class Decision:
    id: int
    epoch: int
    stage: Stage
    previous: Stage
    source: str
    scorer: str
    time: str            # ISO-8601 UTC
    note: str | None
    undoes: int | None   # for source == "undo": the decision id it reverted


def default_study_path(recording_path: str | Path) -> Path:
    """Study file next to the recording: ``night.edf`` -> ``night.edf.sleepvlm``."""
    p = Path(recording_path)
    return p.with_name(p.name + STUDY_SUFFIX)


class Study:
    path: Path
    recording_path: Path
    n_epochs: int

    @classmethod
    def create(cls, path, *, recording_path, n_epochs: int, montage: Montage, scorer: str,
               recording_fingerprint: str = "", start_iso: str | None = None) -> "Study":
        raise NotImplementedError

    @classmethod
    def open(cls, path) -> "Study":
        raise NotImplementedError

    @property
    def montage(self) -> Montage:
        raise NotImplementedError

    def set_montage(self, montage: Montage, *, scorer: str) -> None:
        raise NotImplementedError

    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def stage(self, epoch: int) -> Stage:
        raise NotImplementedError

    def score(self, epoch: int, stage: Stage, *, scorer: str, source: str = MANUAL,
              note: str | None = None) -> Decision:
        raise NotImplementedError

    def undo(self, *, scorer: str) -> Decision | None:
        raise NotImplementedError

    def decisions(self) -> list[Decision]:
        raise NotImplementedError

    def get_state(self, key: str, default: str | None = None) -> str | None:
        raise NotImplementedError

    def set_state(self, key: str, value: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
