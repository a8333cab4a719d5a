"""Answer: what a model said about one epoch, as read from its text and as a study stores it.

The model package reads it from what the model printed (``core.model.answer.parse_answer``:
tolerant, never raises) and the study package stores it (``core.study.suggestions``), so the
record lives here, in the vocabulary both speak. Flags and repairs are named strings (listed in
``core.model.answer``); nothing here interprets a model's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .stages import SLEEP_STAGES, Stage

__all__ = ["Answer"]


@dataclass
class Answer:
    """One parsed answer.

    Attributes
    ----------
    stage : Stage or None
        The sleep stage read, None when none could be read (see ``flags``); a stage that is not
        a sleep stage is kept as printed in ``stage_text`` and flagged.
    stage_text : str or None
        The stage as printed.
    rules : list of str
        The cited rule IDs as printed (normalised), in order, without repeats.
    rationale : str or None
        The reasoning text; None for the coarse variant (stage and rules only).
    flags : list of str
        Problems: the answer needs a human look.
    repaired : list of str
        Repairs needed to read the text (read anyway).
    raw : str
        The model's text.
    """

    stage: Stage | None
    stage_text: str | None
    rules: list[str] = field(default_factory=list)
    rationale: str | None = None
    flags: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    raw: str = ""

    @property
    def ok(self) -> bool:
        """A sleep stage was read and nothing is flagged (repairs alone are fine)."""
        return self.stage in SLEEP_STAGES and not self.flags

    @property
    def was_repaired(self) -> bool:
        """Some repair was needed to read the text."""
        return bool(self.repaired)

    @property
    def coarse(self) -> bool:
        """The coarse variant: no rationale."""
        return self.rationale is None
