"""The consensus of several scorers' hypnograms: the stage most of them gave each epoch, and
the epochs where no stage has the most votes (ties), kept for a person to adjudicate.

Only W, N1, N2, N3 and R vote; an unscored or artefact label (or None) abstains. An epoch no
scorer gave a stage is ``Stage.UNSCORED``. A tie is left as None in ``stages`` and listed in
``ties`` unless ``break_ties="ranked"``: then it goes to the tied stage chosen by the most
reliable scorer (the one agreeing most often with the others over the night, as Guillot et al.
2020 rank the Dreem scorers), then the next most reliable; a tie none of them breaks goes to the
tied stage first in W, N1, N2, N3, R. An adjudication (``Consensus.adjudicated``) settles a tie
with the stage a person chose.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from ..base.stages import SLEEP_STAGES, Stage

_INDEX = {s: i for i, s in enumerate(SLEEP_STAGES)}
BREAK_TIES = ("none", "ranked")


@dataclass(frozen=True)
class Consensus:
    """A consensus hypnogram.

    ``stages[e]`` is the majority stage, ``Stage.UNSCORED`` where no scorer gave a stage, None
    at an unsettled tie. ``ties`` lists every epoch that was tied (settled or not);
    ``votes[e]`` counts the votes for W, N1, N2, N3, R; ``settled`` maps the ties a person
    adjudicated to the stage chosen.
    """

    stages: tuple[Stage | None, ...]
    ties: tuple[int, ...]
    votes: np.ndarray = field(repr=False, compare=False)
    scorers: tuple[str, ...] = ()
    settled: Mapping[int, Stage] = field(default_factory=dict)

    @property
    def unsettled(self) -> list[int]:
        """The tied epochs still waiting for adjudication."""
        return [e for e in self.ties if self.stages[e] is None]

    def tied_stages(self, epoch: int) -> list[Stage]:
        """The stages tied at ``epoch`` (empty when it is not a tie)."""
        if epoch not in self.ties:
            return []
        row = self.votes[epoch]
        return [SLEEP_STAGES[i] for i in np.flatnonzero(row == row.max())]

    def adjudicated(self, settled: Mapping[int, Stage]) -> "Consensus":
        """This consensus with the given ties settled.

        Parameters
        ----------
        settled : mapping of int to Stage
            Epoch -> the stage a person chose for that tie (later entries of an audit trail
            replace earlier ones before this is called).

        Returns
        -------
        Consensus
            A copy whose ``stages`` carry the chosen stages at those epochs.

        Raises
        ------
        ValueError
            When an epoch is not a tie, or the stage chosen is not one of the tied stages.
        """
        stages = list(self.stages)
        for epoch, stage in settled.items():
            tied = self.tied_stages(epoch)
            if not tied:
                raise ValueError(f"epoch {epoch + 1} is not a tie: the scorers' majority "
                                 f"stands there")
            if stage not in tied:
                raise ValueError(f"epoch {epoch + 1} is tied between "
                                 f"{', '.join(s.value for s in tied)}, not {Stage(stage).value}")
            stages[epoch] = Stage(stage)
        return replace(self, stages=tuple(stages), settled={**self.settled, **dict(settled)})


def consensus(scorings: Mapping[str, Sequence[Stage | None]] | Sequence[Sequence[Stage | None]],
              *, break_ties: str = "none") -> Consensus:
    """Per-epoch majority of several scorers' hypnograms.

    Parameters
    ----------
    scorings : mapping of scorer name to stages, or a sequence of stage sequences
        Each scorer's stage per epoch, all of one length.
    break_ties : {"none", "ranked"}
        "none" (default): a tie stays None, for adjudication. "ranked": it goes to the stage the
        most reliable of the tied scorers gave (see the module's notes).

    Returns
    -------
    Consensus
        The majority stage per epoch, the tied epochs and the votes.

    Raises
    ------
    ValueError
        With no scoring, scorings of different lengths, or an unknown ``break_ties``.
    """
    if break_ties not in BREAK_TIES:
        raise ValueError(f"break_ties must be one of {', '.join(BREAK_TIES)}, not {break_ties!r}")
    names, rows = _named(scorings)
    codes = stage_codes(rows)
    k, n = codes.shape
    votes = np.zeros((n, len(SLEEP_STAGES)), dtype=np.int64)
    for i in range(k):
        scored = codes[i] >= 0
        np.add.at(votes, (np.flatnonzero(scored), codes[i][scored]), 1)
    rank = reliability_rank(codes) if break_ties == "ranked" else []
    out: list[Stage | None] = []
    ties = []
    for e in range(n):
        row = votes[e]
        if row.sum() == 0:
            out.append(Stage.UNSCORED)
            continue
        tied = np.flatnonzero(row == row.max())
        if len(tied) == 1:
            out.append(SLEEP_STAGES[int(tied[0])])
            continue
        ties.append(e)
        if break_ties == "none":
            out.append(None)
            continue
        pick = int(tied[0])
        for r in rank:
            if codes[r, e] in tied:
                pick = int(codes[r, e])
                break
        out.append(SLEEP_STAGES[pick])
    return Consensus(stages=tuple(out), ties=tuple(ties), votes=votes, scorers=tuple(names))


def stage_codes(rows: Sequence[Sequence[Stage | None]]) -> np.ndarray:
    """Scorers x epochs codes 0..4 (W, N1, N2, N3, R), -1 where a scorer gave no sleep stage.

    Parameters
    ----------
    rows : sequence of stage sequences
        One per scorer, all of one length.

    Returns
    -------
    numpy.ndarray of int64, shape (scorers, epochs)

    Raises
    ------
    ValueError
        With no scoring or scorings of different lengths.
    """
    if not rows:
        raise ValueError("no scoring to compare")
    n = len(rows[0])
    if any(len(r) != n for r in rows):
        raise ValueError("the scorings cover different numbers of epochs "
                         f"({', '.join(str(len(r)) for r in rows)})")
    return np.array([[_INDEX.get(s, -1) for s in r] for r in rows], dtype=np.int64).reshape(len(rows), n)


def reliability_rank(codes: np.ndarray) -> list[int]:
    """Scorer indices, most reliable first: by mean epoch agreement with each other scorer
    (over the epochs both scored).

    Parameters
    ----------
    codes : numpy.ndarray, shape (scorers, epochs)
        As :func:`stage_codes` returns.

    Returns
    -------
    list of int
    """
    k = codes.shape[0]
    agree = np.zeros(k)
    for i in range(k):
        for j in range(k):
            if i != j:
                both = (codes[i] >= 0) & (codes[j] >= 0)
                agree[i] += float(np.mean(codes[i][both] == codes[j][both])) if both.any() else 0.0
    return [int(i) for i in np.argsort(-agree, kind="stable")]


def _named(scorings) -> tuple[list[str], list[Sequence[Stage | None]]]:
    if isinstance(scorings, Mapping):
        return [str(k) for k in scorings], list(scorings.values())
    rows = list(scorings)
    return [f"scorer {i + 1}" for i in range(len(rows))], rows
