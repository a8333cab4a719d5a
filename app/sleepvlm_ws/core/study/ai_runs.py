"""A scoring run in the audit trail: one event when it starts, one when it ends (no Qt).

The answers a run stores are suggestions (``core.study.suggestions``) and write no audit event
each; the run itself is audited twice, so the trail says which model scored the night, with
which renderer, which passes, how many epochs it set out to score and how it ended.
"""

from __future__ import annotations

from typing import Iterable

from .study import Study
from .suggestion_key import SuggestionKey

__all__ = ["AI_RUN_STARTED", "AI_RUN_FINISHED", "record_run_started", "record_run_finished"]

# Audit event kinds for a scoring run (logged with Study.record_event)
AI_RUN_STARTED = "ai_run_started"
AI_RUN_FINISHED = "ai_run_finished"


def record_run_started(study: Study, key: SuggestionKey, *, passes: Iterable[str],
                       epochs_to_score: dict[str, int], actor: str,
                       details: dict | None = None) -> None:
    """One audit event when an AI scoring run starts (not one per epoch).

    Parameters
    ----------
    study : Study
        The study the run writes into.
    key : SuggestionKey
        The run's model and renderer (its pass is not used: ``passes`` says which).
    passes : iterable of str
        The passes the run will ask for.
    epochs_to_score : dict
        Pass -> epochs still to score.
    actor : str
        Who started it.
    details : dict, optional
        More for the payload (the epochs requested, the model's label).
    """
    payload = {"model_id": key.model_id, "renderer_version": key.renderer_version,
               "passes": list(passes), "epochs_to_score": dict(epochs_to_score)}
    if details:
        payload.update(details)
    study.record_event(AI_RUN_STARTED, payload, actor)


def record_run_finished(study: Study, key: SuggestionKey, *, outcome: str, counts: dict,
                        actor: str) -> None:
    """One audit event when an AI scoring run ends.

    Parameters
    ----------
    study : Study
        The study the run wrote into.
    key : SuggestionKey
        The run's model and renderer.
    outcome : str
        ``completed``, ``cancelled``, ``failed`` or ``interrupted``.
    counts : dict
        What it did (stored per pass, skipped for want of signal, seconds: ``RunSummary.counts``).
    actor : str
        Who ran it.
    """
    study.record_event(AI_RUN_FINISHED, {"model_id": key.model_id,
                                         "renderer_version": key.renderer_version,
                                         "outcome": outcome, "counts": dict(counts)}, actor)
