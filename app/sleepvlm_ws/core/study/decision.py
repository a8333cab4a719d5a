"""Decision: one stage a scorer gave one epoch, with how it came (its source: manual, an AI
suggestion accepted or overridden, imported, or the undo of an earlier decision), when, and the
scorer's note. A study keeps every decision; the epoch's current stage is the latest."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.stages import Stage

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


DECISION_COLUMNS = "id, epoch, stage, previous, source, scorer, time, note, undoes"


def decision_from_row(row: tuple) -> Decision:
    """A decision as the ``decisions`` table stores it.

    Parameters
    ----------
    row : tuple
        One row of ``SELECT {DECISION_COLUMNS} FROM decisions``.

    Returns
    -------
    Decision
    """
    did, epoch, stage, previous, source, scorer, time, note, undoes = row
    return Decision(did, epoch, Stage(stage), Stage(previous), source, scorer, time, note, undoes)
