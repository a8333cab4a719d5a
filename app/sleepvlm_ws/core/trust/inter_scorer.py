"""Agreement among several scorers of one night: pairwise Cohen's kappa, Fleiss' kappa (overall
and per stage), how each scorer agrees with the consensus of the others, and the epochs where
they differ (the technologist's jump list).

Fleiss' kappa (Fleiss 1971) needs every epoch rated by every scorer: it is computed over the
epochs all scorers gave W, N1, N2, N3 or R; the others are counted in ``n_excluded``. The per-stage
kappa is Fleiss' category-specific one, ``1 - sum_i n_ij (m - n_ij) / (N m (m - 1) p_j (1 - p_j))``,
None for a stage nobody used or everybody used throughout. Pairwise figures come from
:func:`core.trust.agreement.agreement` (each pair over the epochs both scored); there the first
scorer named is the reference, and a stage's F1 is the pair's specific agreement on that stage.

An AI's suggestions or a second opinion can be passed as further "scorers" (None where it named
no stage).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np

from ..base.stages import SLEEP_STAGES, Stage
from .agreement import Agreement, NoCommonEpochsError, agreement
from .consensus import consensus, stage_codes


@dataclass(frozen=True)
class FleissKappa:
    """Fleiss' kappa over the epochs every scorer gave a sleep stage."""

    kappa: float | None                    # None when chance agreement is 1 (one stage only)
    per_stage: dict                        # Stage -> float | None
    n_epochs: int                          # epochs rated by all
    n_excluded: int                        # epochs some scorer left unscored / artefact
    n_scorers: int
    observed: float                        # mean pairwise agreement per epoch (P bar)
    chance: float                          # P bar e


@dataclass(frozen=True)
class DifferingEpoch:
    """An epoch where the scorers who scored it did not all give the same stage."""

    epoch: int
    stages: dict                           # scorer -> Stage | None
    n_stages: int                          # how many different sleep stages were given

    def text(self) -> str:
        """``epoch 12: N1 (amy, bob), N2 (cho)`` — 1-based, as the GUI numbers epochs."""
        by_stage: dict[str, list[str]] = {}
        for scorer, stage in self.stages.items():
            label = "no stage" if stage not in _INDEX else stage.value
            by_stage.setdefault(label, []).append(scorer)
        parts = [f"{label} ({', '.join(names)})" for label, names in by_stage.items()]
        return f"epoch {self.epoch + 1}: " + ", ".join(parts)


@dataclass(frozen=True)
class InterScorerReport:
    """Everything :func:`compare_scorers` measures for one night (or pooled nights)."""

    scorers: tuple[str, ...]
    n_epochs: int
    pairwise: dict                         # (scorer a, scorer b) -> Agreement (a the reference)
    fleiss: FleissKappa | None             # None with fewer than two scorers rating together
    versus_others: dict                    # scorer -> Agreement with the consensus of the others
    ties_of_others: dict                   # scorer -> epochs where the others were tied
    differing: tuple[DifferingEpoch, ...]

    def to_dict(self) -> dict:
        """Plain JSON (stages by their short names)."""
        f = self.fleiss
        return {
            "scorers": list(self.scorers),
            "n_epochs": self.n_epochs,
            "pairwise": [{"reference": a, "compared": b, "kappa": ag.kappa,
                          "accuracy": ag.accuracy, "n_epochs": ag.n_epochs}
                         for (a, b), ag in self.pairwise.items()],
            "fleiss": None if f is None else {
                "kappa": f.kappa, "n_epochs": f.n_epochs, "n_excluded": f.n_excluded,
                "per_stage": {s.value: k for s, k in f.per_stage.items()}},
            "versus_others": {s: {"kappa": ag.kappa, "accuracy": ag.accuracy,
                                  "n_epochs": ag.n_epochs, "ties_left_out": self.ties_of_others[s]}
                              for s, ag in self.versus_others.items()},
            "differing_epochs": [d.epoch for d in self.differing],
        }


_INDEX = {s: i for i, s in enumerate(SLEEP_STAGES)}


def fleiss_kappa(scorings: Mapping[str, Sequence[Stage | None]] | Sequence[Sequence[Stage | None]]
                 ) -> FleissKappa:
    """Fleiss' kappa of several scorers over one epoch grid.

    Parameters
    ----------
    scorings : mapping of scorer name to stages, or a sequence of stage sequences
        At least two scorers, all of one length.

    Returns
    -------
    FleissKappa
        The overall and per-stage kappa over the epochs every scorer gave a sleep stage.

    Raises
    ------
    ValueError
        With fewer than two scorers or scorings of different lengths.
    NoCommonEpochsError
        When no epoch was given a sleep stage by every scorer.
    """
    rows = list(scorings.values()) if isinstance(scorings, Mapping) else list(scorings)
    if len(rows) < 2:
        raise ValueError("Fleiss' kappa needs at least two scorers")
    codes = stage_codes(rows)
    rated = np.all(codes >= 0, axis=0)
    if not rated.any():
        raise NoCommonEpochsError(None, "no epoch has a sleep stage from every scorer; "
                                        "nothing to compare")
    counts = np.stack([np.sum(codes[:, rated] == j, axis=0) for j in range(len(SLEEP_STAGES))],
                      axis=1)
    kappa, per, observed, chance = fleiss_from_counts(counts)
    return FleissKappa(kappa=kappa, per_stage=dict(zip(SLEEP_STAGES, per)),
                       n_epochs=int(rated.sum()), n_excluded=int((~rated).sum()),
                       n_scorers=len(rows), observed=observed, chance=chance)


def fleiss_from_counts(counts: np.ndarray) -> tuple[float | None, list[float | None], float, float]:
    """Fleiss' kappa from a subjects x categories table of rating counts.

    Parameters
    ----------
    counts : array-like of int, shape (subjects, categories)
        ``counts[i, j]``: how many raters put subject i in category j; every row sums to the
        same number of raters m >= 2.

    Returns
    -------
    kappa : float or None
        None when the chance agreement is 1.
    per_category : list of float or None
        Category-specific kappa; None for a category with p_j 0 or 1.
    observed : float
        Mean observed agreement (P bar).
    chance : float
        Chance agreement (P bar e).

    Raises
    ------
    ValueError
        When rows differ in their number of raters or there are fewer than two raters.
    """
    counts = np.asarray(counts, dtype=float)
    m_per = counts.sum(axis=1)
    if counts.ndim != 2 or counts.shape[0] == 0 or np.any(m_per != m_per[0]) or m_per[0] < 2:
        raise ValueError("every subject needs the same number (>= 2) of ratings")
    n, m = counts.shape[0], float(m_per[0])
    p = counts.sum(axis=0) / (n * m)
    agree = (np.sum(counts * counts, axis=1) - m) / (m * (m - 1))
    observed, chance = float(agree.mean()), float(np.sum(p * p))
    kappa = None if chance >= 1.0 else float((observed - chance) / (1.0 - chance))
    per: list[float | None] = []
    for j in range(counts.shape[1]):
        if p[j] <= 0.0 or p[j] >= 1.0:
            per.append(None)
            continue
        disagree = float(np.sum(counts[:, j] * (m - counts[:, j])))
        per.append(float(1.0 - disagree / (n * m * (m - 1) * p[j] * (1 - p[j]))))
    return kappa, per, observed, chance


def differing_epochs(scorings: Mapping[str, Sequence[Stage | None]]) -> list[DifferingEpoch]:
    """The epochs where the scorers who gave a sleep stage did not all give the same one.

    Parameters
    ----------
    scorings : mapping of scorer name to stages
        All of one length.

    Returns
    -------
    list of DifferingEpoch
        In epoch order.
    """
    names = list(scorings)
    codes = stage_codes(list(scorings.values()))
    out = []
    for e in range(codes.shape[1]):
        given = {int(c) for c in codes[:, e] if c >= 0}
        if len(given) > 1:
            out.append(DifferingEpoch(e, {name: scorings[name][e] for name in names}, len(given)))
    return out


def compare_scorers(scorings: Mapping[str, Sequence[Stage | None]], *,
                    consensus_of: Sequence[str] | None = None) -> InterScorerReport:
    """Pairwise and Fleiss' kappa, each scorer against the consensus of the others, and the
    epochs where they differ.

    Parameters
    ----------
    scorings : mapping of scorer name to stages
        Two or more scorers of one night (or of pooled nights), all of one length.
    consensus_of : sequence of str, optional
        The scorers whose consensus is the reference (default: all). Each scorer is held
        against the consensus of these, itself left out: the AI compared with the
        technologists' consensus, never part of it. Fleiss' kappa is over these too.

    Returns
    -------
    InterScorerReport

    Raises
    ------
    ValueError
        With fewer than two scorers or scorings of different lengths.

    Notes
    -----
    A pair that shares no scored epoch has no entry in ``pairwise``, a scorer with none in
    common with the consensus of the others none in ``versus_others``, and Fleiss' kappa is
    None when no epoch was scored by all.
    """
    names = list(scorings)
    if len(names) < 2:
        raise ValueError("comparing scorers needs at least two scorings")
    stage_codes(list(scorings.values()))                   # one length, or a clear error
    panel = names if consensus_of is None else [n for n in names if n in set(consensus_of)]
    pairwise: dict[tuple[str, str], Agreement] = {}
    for a, b in combinations(names, 2):
        try:
            pairwise[(a, b)] = agreement(scorings[a], scorings[b])
        except NoCommonEpochsError:      # e.g. one scored only the first hours, the other the rest
            continue
    try:
        fleiss = fleiss_kappa({n: scorings[n] for n in panel}) if len(panel) >= 2 else None
    except NoCommonEpochsError:
        fleiss = None
    versus, ties = {}, {}
    for name in names:
        others = [o for o in panel if o != name]
        if len(others) >= 2:
            reference = consensus({o: scorings[o] for o in others})
            try:
                versus[name] = agreement(reference.stages, scorings[name])
            except NoCommonEpochsError:
                continue
            ties[name] = len(reference.ties)
    return InterScorerReport(scorers=tuple(names), n_epochs=len(scorings[names[0]]),
                             pairwise=pairwise, fleiss=fleiss, versus_others=versus,
                             ties_of_others=ties, differing=tuple(differing_epochs(scorings)))
