"""Real study files with stored suggestions and second opinions, built from what a model
printed and what a stager answered (the review tests' shared starting point)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.model.answer import parse_answer
from sleepvlm_ws.core.signals.montage import Derivation, Montage
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study.study import Study
from sleepvlm_ws.core.study.suggestions import FAST, SuggestionKey, SuggestionStore
from sleepvlm_ws.core.trust import second_opinion
from sleepvlm_ws.core.trust.second_opinion import SecondOpinion, SecondOpinionResult


def dist(stage: str, p: float) -> dict:
    """Five stage probabilities: ``p`` for ``stage``, the rest shared equally."""
    return {s.value: (p if s.value == stage else (1 - p) / 4) for s in SLEEP_STAGES}


def opinion(epoch: int, method: str, stage: Stage, p: float) -> SecondOpinion:
    """A stager's answer: ``p`` for ``stage``, the rest shared equally."""
    rest = (1.0 - p) / 4
    return SecondOpinion(epoch, method, stage, {s: (p if s is stage else rest) for s in SLEEP_STAGES})


def scored_study(path: Path, n_epochs: int, answers: Mapping, *, model_id: str,
                 probabilities: Mapping[int, dict] | None = None, opinions=(),
                 method: str | None = None, central_eeg: bool = True) -> Study:
    """A new study (C4-M1 in the central role unless told otherwise) with the model's answers
    (epoch -> printed text or an Answer) stored as fast-pass suggestions, and the stager's
    ``opinions`` stored as one second-opinion run of ``method``."""
    montage = Montage()
    if central_eeg:
        montage.roles["C4-M1"] = Derivation("C4", "M1")
    study = Study.create(path, recording_path="night.edf", n_epochs=n_epochs, montage=montage,
                         scorer="amy")
    store = SuggestionStore(study)
    for epoch, answer in answers.items():
        parsed = parse_answer(answer) if isinstance(answer, str) else answer
        store.put(epoch, parsed, SuggestionKey(model_id, RENDERER_VERSION, FAST),
                  stage_probabilities=(probabilities or {}).get(epoch))
    if opinions:
        second_opinion.store(study, SecondOpinionResult(method, n_epochs, {"eeg": "C4 - M1"},
                                                        list(opinions)), "amy")
    return study
