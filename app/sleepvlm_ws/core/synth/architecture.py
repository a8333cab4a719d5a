"""Night architecture: the statistics that describe how a hypnogram is built.

Used to compare the generator's nights (:func:`~.cycles.draw_hypnogram`) with real scored
nights (``benchmarks/bench_synth_architecture.py``) and to fit the generator to them. Qt-free;
everything works from one :class:`~..stages.Stage` per 30-s epoch.

The AASM report figures (TST, sleep-onset latency, WASO, stage shares, REM latency, awakenings)
come from :func:`~..sleep_statistics.sleep_statistics`; this module adds what describes the
*structure* of the night:

- **Bouts**: maximal runs of one stage within the sleep period (sleep onset to final awakening;
  so W bouts are the awakenings of WASO). Unscored and artefact epochs end a bout and are not
  bouts themselves. Lengths in minutes.
- **Epoch transition matrix**: counts of stage ``a`` followed by stage ``b`` for consecutive
  epochs within the sleep period (pairs with an unscored/artefact epoch skipped), rows
  normalised to probabilities (order W, N1, N2, N3, R).
- **Bout transition matrix**: the same for consecutive bouts (the stage a bout of ``a`` changes
  to), so its diagonal is 0; an unscored/artefact gap between two bouts is skipped over.
- **REM periods**: REM epochs within the sleep period grouped so that REM epochs less than
  15 min apart (``REM_GAP_MIN``) belong to the same period (a common definition, after Feinberg
  & Floyd 1979). **NREM-REM cycle length**: the mean interval between the onsets of consecutive
  REM periods (None for fewer than two periods).

Helpers to prepare real nights: :func:`trim_wake` (keep a fixed margin of wake around the sleep
period, for recordings such as Sleep-EDF cassette that run for hours before lights off and after
lights on) and :func:`consensus` (per-epoch majority of several scorers, as for the Dreem Open
Datasets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..base.stages import EPOCH_SECONDS, Stage
from ..trust.consensus import consensus as trust_consensus
from ..trust.sleep_statistics import sleep_statistics

#: Stage order of the transition matrices.
ORDER = (Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R)
#: REM epochs closer than this (minutes) belong to the same REM period.
REM_GAP_MIN = 15.0
#: Wake kept before sleep onset and after the final awakening by :func:`trim_wake` (minutes).
WAKE_MARGIN_MIN = 30.0
_INDEX = {s: i for i, s in enumerate(ORDER)}


@dataclass(frozen=True)
class Architecture:
    """Architecture of one night (minutes; None where a statistic does not exist).

    Attributes
    ----------
    tib_min, tst_min, sol_min, waso_min, rem_latency_min, awakenings, stage_pct_tst
        From :func:`~..sleep_statistics.sleep_statistics` (REM latency from sleep onset;
        ``stage_pct_tst`` maps N1, N2, N3, R to % of TST).
    bouts_min : dict
        Stage -> list of bout lengths (minutes) within the sleep period.
    transitions : numpy.ndarray
        5 x 5 epoch-to-epoch transition counts within the sleep period (order :data:`ORDER`).
    bout_transitions : numpy.ndarray
        5 x 5 bout-to-bout change counts (diagonal 0).
    rem_periods : int
        Number of REM periods.
    cycle_min : float or None
        Mean interval between consecutive REM-period onsets.
    """

    tib_min: float
    tst_min: float
    sol_min: float | None
    waso_min: float | None
    rem_latency_min: float | None
    awakenings: int
    stage_pct_tst: dict
    bouts_min: dict = field(repr=False)
    transitions: np.ndarray = field(repr=False)
    bout_transitions: np.ndarray = field(repr=False)
    rem_periods: int = 0
    cycle_min: float | None = None

    def bout_summary(self, stage: Stage) -> tuple[float, float, float] | None:
        """(mean, median, 90th percentile) bout length of ``stage`` in minutes; None if none."""
        b = self.bouts_min[stage]
        if not b:
            return None
        a = np.asarray(b, dtype=float)
        return float(a.mean()), float(np.median(a)), float(np.percentile(a, 90))

    def scalars(self) -> dict[str, float | None]:
        """The night's scalar statistics by name (for tables: mean +- sd across nights)."""
        out: dict[str, float | None] = {
            "TIB (min)": self.tib_min, "TST (min)": self.tst_min,
            "sleep-onset latency (min)": self.sol_min, "WASO (min)": self.waso_min,
            "REM latency (min)": self.rem_latency_min, "awakenings (n)": float(self.awakenings),
        }
        for s in ORDER[1:]:
            out[f"{s.value} % TST"] = self.stage_pct_tst[s]
        for s in ORDER:
            bs = self.bout_summary(s)
            out[f"{s.value} bouts (n)"] = float(len(self.bouts_min[s]))
            for k, name in enumerate(("mean", "median", "p90")):
                out[f"{s.value} bout {name} (min)"] = None if bs is None else bs[k]
        out["REM periods (n)"] = float(self.rem_periods)
        out["NREM-REM cycle (min)"] = self.cycle_min
        return out


def runs(stages: Sequence[Stage]) -> list[tuple[Stage, int, int]]:
    """Maximal runs of one stage: ``(stage, start, length)`` in epoch order."""
    out: list[tuple[Stage, int, int]] = []
    for i, s in enumerate(stages):
        if out and out[-1][0] is s:
            st, start, n = out[-1]
            out[-1] = (st, start, n + 1)
        else:
            out.append((s, i, 1))
    return out


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Rows divided by their sums (rows summing to 0 stay 0)."""
    counts = np.asarray(counts, dtype=float)
    tot = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, tot, out=np.zeros_like(counts), where=tot > 0)


def architecture(stages: Sequence[Stage], *, epoch_s: float = EPOCH_SECONDS) -> Architecture:
    """The architecture of one night, lights off to lights on being the first to the last
    scored epoch (as in :func:`~..sleep_statistics.sleep_statistics`).

    Parameters
    ----------
    stages : sequence of Stage
        One stage per epoch.
    epoch_s : float
        Epoch length in seconds.

    Returns
    -------
    Architecture
    """
    stages = [s if isinstance(s, Stage) else Stage(s) for s in stages]
    st = sleep_statistics(stages, epoch_s=epoch_s)
    per_min = 60.0 / epoch_s
    spt = stages[st.sleep_onset:st.final_awakening] if st.sleep_onset is not None else []

    bouts: dict[Stage, list[float]] = {s: [] for s in ORDER}
    trans = np.zeros((5, 5), dtype=np.int64)
    bout_trans = np.zeros((5, 5), dtype=np.int64)
    for a, b in zip(spt, spt[1:]):
        if a in _INDEX and b in _INDEX:
            trans[_INDEX[a], _INDEX[b]] += 1
    stage_runs = [r for r in runs(spt) if r[0] in _INDEX]
    for s, _, n in stage_runs:
        bouts[s].append(n / per_min)
    for (a, _, _), (b, _, _) in zip(stage_runs, stage_runs[1:]):
        if a is not b:
            bout_trans[_INDEX[a], _INDEX[b]] += 1

    rem_at = [i for i, s in enumerate(spt) if s is Stage.R]
    onsets: list[int] = []
    for k, i in enumerate(rem_at):
        if k == 0 or (i - rem_at[k - 1]) / per_min >= REM_GAP_MIN:
            onsets.append(i)
    cycle = (float(np.mean(np.diff(onsets))) / per_min) if len(onsets) >= 2 else None

    return Architecture(
        tib_min=st.tib_min, tst_min=st.tst_min, sol_min=st.sol_min, waso_min=st.waso_min,
        rem_latency_min=st.latency_r_min, awakenings=st.awakenings,
        stage_pct_tst=dict(st.stage_pct_tst), bouts_min=bouts, transitions=trans,
        bout_transitions=bout_trans, rem_periods=len(onsets), cycle_min=cycle,
    )


def trim_wake(stages: Sequence[Stage], margin_min: float = WAKE_MARGIN_MIN, *,
              epoch_s: float = EPOCH_SECONDS) -> list[Stage]:
    """Cut a recording to its sleep period plus ``margin_min`` of whatever precedes sleep onset
    and follows the final awakening (the common practice for Sleep-EDF cassette recordings,
    whose lights-off / lights-on times are not in the hypnogram; e.g. Supratak et al. 2017).
    Unscored / artefact epochs at either end of the result are dropped. A night without sleep
    is returned unchanged.
    """
    stages = list(stages)
    sleep_at = [i for i, s in enumerate(stages) if s.is_sleep]
    if not sleep_at:
        return stages
    m = int(round(margin_min * 60.0 / epoch_s))
    out = stages[max(0, sleep_at[0] - m):sleep_at[-1] + 1 + m]
    lo, hi = 0, len(out)
    while lo < hi and out[lo] not in _INDEX:
        lo += 1
    while hi > lo and out[hi - 1] not in _INDEX:
        hi -= 1
    return out[lo:hi]


def consensus(scorings: Sequence[Sequence[Stage]]) -> list[Stage]:
    """Per-epoch majority of several scorers' hypnograms (equal lengths), every tie broken by
    the most reliable scorer (:func:`core.trust.consensus.consensus` with ``break_ties="ranked"``):
    the architecture of a night needs a stage in every epoch.

    Parameters
    ----------
    scorings : sequence of stage sequences
        Each scorer's stages, all of one length.

    Returns
    -------
    list of Stage
        ``Stage.UNSCORED`` where no scorer gave a sleep stage.
    """
    return list(trust_consensus(scorings, break_ties="ranked").stages)


#: Dreem Open Datasets JSON code -> stage (-1: not scored).
DREEM_CODES = {-1: Stage.UNSCORED, 0: Stage.W, 1: Stage.N1, 2: Stage.N2, 3: Stage.N3, 4: Stage.R}


def read_dreem_scoring(path) -> list[Stage]:
    """One Dreem Open Datasets scorer file: a JSON list of codes per 30-s epoch."""
    data = json.loads(Path(path).read_text())
    return [DREEM_CODES[int(c)] for c in data]


def summarise(values: Iterable[float | None]) -> tuple[float, float, int] | None:
    """(mean, sd, n) of the values that exist (sd with ddof=1, 0 for one value); None if none."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return None
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)
