"""Where the suggested stage comes from: a real-trained stager where it ran, else the model (no Qt).

The default model pack was trained on generated PSG only. On real expert-scored EEG (the DREAMS
dev set, models/default/MODEL_CARD.md) it agrees with the experts less than YASA's stager does,
which was trained on thousands of real nights: kappa 0.48 against 0.66 on the same epochs. A
suggestion is worth what it scores on real people, so by default the stage a technologist is
offered is YASA's wherever YASA could stage the epoch (a central EEG lead sampled at 80 Hz or
more, at least 5 minutes; ``core.trust.second_opinion``), and the model's elsewhere. The model
still reads every epoch: its rules and rationale are shown beside the stage, labelled as the
model's reading, and where the two disagree the epoch is flagged for review. Nothing is hidden:
a led suggestion names its source, the panel says it, and an accepted one's audit event
(``Suggestion.reference``) records the source, the stager's stage and the model's.

``MODEL`` turns the lead off (the model's own stage everywhere, as before). The choice is the
workstation setting ``suggested_stage_from`` (``core.model.settings``). The stager's figures are
its own (it was not tuned on anything here); the lead is a presentation of two stored answers,
computed when shown and never stored.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from ..base.stage_source import DEFAULT_SOURCE, MODEL, SOURCE_TEXT, SOURCES, STAGER, check_source
from ..study.suggestions import Suggestion

__all__ = ["STAGER", "MODEL", "SOURCES", "DEFAULT_SOURCE", "SOURCE_TEXT", "check_source", "lead", "stager_name",
           "lead_all", "source_text"]


def lead(suggestion: Suggestion, opinion, source: str = DEFAULT_SOURCE) -> Suggestion:
    """The suggestion as offered to the technologist.

    Parameters
    ----------
    suggestion : Suggestion
        The model's stored suggestion for an epoch.
    opinion : SecondOpinion or None
        The stager's answer for the same epoch (``core.trust.second_opinion``: ``method``,
        ``stage``, ``probabilities``, ``confidence``); None where it has none.
    source : str
        ``STAGER`` or ``MODEL``.

    Returns
    -------
    Suggestion
        ``suggestion`` itself when the source is the model, the stager has no answer here, or
        the suggestion is already led; else a copy whose stage and probabilities are the
        stager's, with ``stage_source`` naming it and ``model_stage`` keeping the model's.
    """
    check_source(source)
    if source == MODEL or opinion is None or suggestion.led:
        return suggestion
    if opinion.epoch != suggestion.epoch:
        raise ValueError(f"the stager's answer is for epoch {opinion.epoch}, the suggestion "
                         f"for epoch {suggestion.epoch}")
    probabilities = dict(opinion.probabilities)
    return replace(suggestion, stage=opinion.stage, stage_text=suggestion.stage_text,
                   stage_probability=float(probabilities[opinion.stage]),
                   stage_probabilities=probabilities, stage_source=str(opinion.method),
                   model_stage=suggestion.stage,
                   model_stage_probability=suggestion.stage_probability)


def lead_all(suggestions: Mapping[int, Suggestion], opinions: Mapping[int, object],
             source: str = DEFAULT_SOURCE) -> dict[int, Suggestion]:
    """``lead`` for every epoch of ``suggestions``.

    Parameters
    ----------
    suggestions : mapping
        Epoch -> the model's suggestion.
    opinions : mapping
        Epoch -> the stager's answer (``core.trust.second_opinion.load``).
    source : str
        ``STAGER`` or ``MODEL``.

    Returns
    -------
    dict
        Epoch -> the suggestion as offered.
    """
    check_source(source)
    return {epoch: lead(s, opinions.get(epoch), source) for epoch, s in suggestions.items()}


def source_text(suggestion: Suggestion) -> str:
    """Where the suggestion's stage came from, in one phrase.

    Parameters
    ----------
    suggestion : Suggestion
        A suggestion, led or not.

    Returns
    -------
    str
        e.g. ``YASA 0.8.1 (EEG + EOG + EMG), trained on real nights`` or ``the model``.
    """
    if not suggestion.led:
        return "the model"
    method = str(suggestion.stage_source)
    name, _, classifier = method.partition("/")
    if name.startswith("yasa-"):
        leads = classifier.removeprefix("clf_").replace("+", " + ").upper() or "EEG"
        return f"{stager_name(method)} ({leads}), trained on real nights"
    return method


def stager_name(method: str) -> str:
    """A stager's method as a technologist names it.

    Parameters
    ----------
    method : str
        As a second-opinion run stores it, e.g. ``yasa-0.8.1/clf_eeg+eog``.

    Returns
    -------
    str
        ``YASA 0.8.1``; any other method as stored.
    """
    name = str(method).partition("/")[0]
    return f"YASA {name.removeprefix('yasa-')}" if name.startswith("yasa-") else str(method)
