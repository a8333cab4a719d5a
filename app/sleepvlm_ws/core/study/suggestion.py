"""Suggestion: what the model said about one epoch, as the study keeps it and the review offers it.

The record the store reads back (``core.study.suggestions.SuggestionStore``), the review leads
with the stager's stage where it has one (``core.review.suggested_stage``) and a decision's
audit event refers to (``Suggestion.reference``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..base.stages import Stage
from .suggestion_key import SuggestionKey

__all__ = ["Suggestion", "RATIONALE_DISAGREES", "rationale_only_flags"]

# Flag set on a merged suggestion whose rationale pass named a different stage
RATIONALE_DISAGREES = "rationale_pass_disagrees"


@dataclass(frozen=True)
class Suggestion:
    """What the model said about one epoch.

    ``stage`` is the parsed stage (None when the answer named no stage: it cannot be
    accepted); ``stage_text`` the stage as the model printed it. ``pass_name`` is the pass
    the stage comes from. A merged suggestion (``SuggestionStore.get``) takes the stage from
    the fast pass and the ``rationale`` from the rationale pass; ``rationale_pass_stage`` is
    then the stage the rationale pass named.

    ``stage_probability`` is the model's probability for ``stage`` and ``stage_probabilities``
    the five (Stage -> probability, sum 1), of the pass the stage comes from; None: unknown.

    A *led* suggestion (``core.review.suggested_stage.lead``) takes its stage from a
    real-trained stager instead: ``stage_source`` names it (e.g. ``yasa-0.8.1/clf_eeg``; None:
    the stage is the model's own), ``stage`` and the probabilities are the stager's, and
    ``model_stage`` / ``model_stage_probability`` keep what the model read. Rules, rationale
    and flags stay the model's: they explain ``model_stage``. Never stored: a led suggestion
    is made when shown, and its ``reference()`` names both."""

    epoch: int
    model_id: str
    renderer_version: str
    pass_name: str
    stage: Stage | None
    stage_text: str
    rules: tuple[str, ...] = ()
    rationale: str | None = None
    flags: tuple[str, ...] = ()
    repaired: Any = None
    raw: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float | None = None
    created: str = ""
    id: int | None = None
    rationale_pass_stage: Stage | None = field(default=None, compare=False)
    stage_probability: float | None = None
    stage_probabilities: dict[Stage, float] | None = field(default=None, hash=False)
    stage_source: str | None = None
    model_stage: Stage | None = None
    model_stage_probability: float | None = None

    @property
    def key(self) -> SuggestionKey:
        """Whose answer this is (model, renderer version, and the pass the stage comes from)."""
        return SuggestionKey(self.model_id, self.renderer_version, self.pass_name)

    @property
    def led(self) -> bool:
        """The stage comes from a real-trained stager, not from the model."""
        return self.stage_source is not None

    @property
    def model_reading(self) -> Stage | None:
        """The stage the model itself named (what its rules and rationale explain)."""
        return self.model_stage if self.led else self.stage

    @property
    def model_probability(self) -> float | None:
        """The model's probability for ``model_reading`` (None: unknown)."""
        return self.model_stage_probability if self.led else self.stage_probability

    def reference(self) -> dict:
        """What a decision's audit event records about this suggestion (the probability only
        when known: a reference to a suggestion without one reads as before schema v4)."""
        ref = {"model_id": self.model_id, "renderer_version": self.renderer_version,
               "pass": self.pass_name,
               "suggested_stage": None if self.stage is None else self.stage.value,
               "stage_text": self.stage_text, "rules": list(self.rules)}
        if self.id is not None:
            ref["suggestion_id"] = self.id
        if self.stage_probability is not None:
            ref["stage_probability"] = round(float(self.stage_probability), 6)
        if self.led:
            ref["stage_source"] = self.stage_source
            ref["model_stage"] = None if self.model_stage is None else self.model_stage.value
            if self.model_stage_probability is not None:
                ref["model_stage_probability"] = round(float(self.model_stage_probability), 6)
        return ref


def rationale_only_flags(merged: Suggestion, fast: Suggestion | None) -> tuple[str, ...]:
    """The flags of a merged suggestion that only its rationale answer carries.

    Parameters
    ----------
    merged : Suggestion
        As ``SuggestionStore.get`` gives it (fast stage, rationale pass's reasoning).
    fast : Suggestion or None
        The fast answer as stored (``get_pass`` with the fast pass's key).

    Returns
    -------
    tuple of str
        Flags to show as the rationale's own (() when there is no rationale to set apart).
    """
    if fast is None or merged.rationale is None or merged.pass_name != fast.pass_name:
        return ()
    return tuple(f for f in merged.flags if f not in fast.flags and f != RATIONALE_DISAGREES)
