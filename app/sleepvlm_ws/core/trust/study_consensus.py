"""The scorers of one study side by side: the study's own scoring, the other scorers
(``core.study.scorings``), and optionally the AI's suggestions and the second opinion as
further "scorers"; their agreement, their consensus, and the adjudication of its ties.

The consensus is taken over the technologists only (the study's own scoring, where it has any
scored epoch, and every other scorer); the AI and the second opinion are compared with it, never
part of it. An adjudication stands while its epoch is still tied between the same stages; if
a scoring changed since and the epoch is no longer tied (or tied otherwise), the adjudication is
listed as stale and not applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from ..base.stages import Stage
from ..study.scorings import Adjudication, ScorerError, adjudications, load_scorings, record_adjudication
from .consensus import Consensus, consensus
from .inter_scorer import InterScorerReport, compare_scorers

OWN = "study"          # the study's own scoring in a comparison


@dataclass(frozen=True)
class StudyConsensus:
    """The consensus of a study's technologists with the adjudications that still stand."""

    consensus: Consensus
    applied: dict                       # epoch -> Adjudication
    stale: dict                         # epoch -> Adjudication no longer matching a tie


def technologists(study) -> dict[str, list[Stage]]:
    """The study's own scoring (as ``"study"``, when any epoch is scored) and every other
    scorer's, in that order.

    Parameters
    ----------
    study : Study

    Returns
    -------
    dict of str to list of Stage
    """
    own = study.stages()
    out: dict[str, list[Stage]] = {}
    if any(s is not Stage.UNSCORED for s in own):
        out[OWN] = own
    out.update(load_scorings(study))
    return out


def study_consensus(study, people: Mapping[str, Sequence[Stage]] | None = None) -> StudyConsensus:
    """The consensus of the study's technologists, its standing adjudications applied.

    Parameters
    ----------
    study : Study
    people : mapping of name to stages, optional
        ``technologists(study)`` when the caller already read it (not read again).

    Returns
    -------
    StudyConsensus

    Raises
    ------
    ScorerError
        With fewer than two technologists' scorings to take a consensus of.
    """
    scorings = technologists(study) if people is None else dict(people)
    if len(scorings) < 2:
        raise ScorerError(study.path, "a consensus needs at least two scorings (import another "
                                      "scorer's hypnogram first)")
    base = consensus(scorings)
    applied, stale = {}, {}
    for epoch, adj in adjudications(study).items():
        if epoch < len(base.stages) and tuple(base.tied_stages(epoch)) == adj.tied:
            applied[epoch] = adj
        else:
            stale[epoch] = adj
    settled = base.adjudicated({e: a.stage for e, a in applied.items()})
    return StudyConsensus(settled, applied, stale)


def adjudicate(study, epoch: int, stage: Stage, *, scorer: str, note: str | None = None) -> Adjudication:
    """Settle a tie of the study's consensus with the stage a person chose (audited).

    Parameters
    ----------
    study : Study
    epoch : int
        0-based.
    stage : Stage
        One of the tied stages.
    scorer : str
        Who adjudicates.
    note : str, optional

    Returns
    -------
    Adjudication

    Raises
    ------
    ScorerError
        When the epoch is not tied, or the stage is not one of the tied ones (one line).
    """
    current = study_consensus(study).consensus
    if not 0 <= int(epoch) < len(current.stages):
        raise ScorerError(study.path, f"epoch {int(epoch) + 1} is outside the study "
                                      f"(1..{len(current.stages)})")
    tied = current.tied_stages(epoch)
    if not tied:
        raise ScorerError(study.path, f"epoch {epoch + 1} is not tied: the scorers' majority "
                                      f"({current.stages[epoch].value}) stands there")
    if Stage(stage) not in tied:
        raise ScorerError(study.path, f"epoch {epoch + 1} is tied between "
                                      f"{', '.join(s.value for s in tied)}, not {Stage(stage).value}")
    return record_adjudication(study, epoch, stage, tied, scorer=scorer, note=note)


def compare_study_scorers(study, extra: Mapping[str, Sequence[Stage | None]] | None = None,
                          people: Mapping[str, Sequence[Stage]] | None = None) -> InterScorerReport:
    """Agreement among the study's technologists, with ``extra`` scorers (the AI, the second
    opinion) compared alongside.

    Parameters
    ----------
    study : Study
    extra : mapping of name to stages, optional
        Further scorings of the same epochs (None where one named no stage).
    people : mapping of name to stages, optional
        ``technologists(study)`` when the caller already read it (not read again).

    Returns
    -------
    InterScorerReport

    Raises
    ------
    ValueError
        With fewer than two scorings in all.
    """
    people = technologists(study) if people is None else people
    scorings: dict[str, Sequence[Stage | None]] = dict(people)
    scorings.update(extra or {})
    return compare_scorers(scorings, consensus_of=list(people))
