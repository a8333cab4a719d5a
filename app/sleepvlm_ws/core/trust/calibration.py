"""Calibration of the model's stage probabilities: does "80 %" come true 80 % of the time? (no Qt)

The model's confidence in a suggestion is its probability for the stage it suggested
(``Suggestion.stage_probability``; ``core.model.stage_confidence``). Against a reference hypnogram each
suggestion is right or wrong; a calibrated model is right in a share of its suggestions equal to
the confidence it gave them.

Definitions (Guo et al. 2017, "On calibration of modern neural networks"; Naeini et al. 2015):

- **Bins.** ``n_bins`` equal-width bins over [0, 1]: bin ``b`` (0-based) holds the confidences
  ``c`` with ``b / n_bins <= c < (b + 1) / n_bins``; the last bin also holds ``c == 1``.
- **Reliability table.** Per bin: how many suggestions fell in it, their mean confidence and
  their accuracy (the share that were right); empty bins have count 0 and no means.
- **Expected calibration error (ECE).** ``sum_b (n_b / N) * |accuracy_b - confidence_b|``: the
  gap between accuracy and confidence, averaged over the suggestions (each bin weighted by its
  count). 0 is perfect; it depends on the binning, so the bin count is always reported with it.
- **Maximum calibration error (MCE).** The largest ``|accuracy_b - confidence_b|`` over the
  non-empty bins.
- **Brier score** (multi-class, Brier 1950). The mean over suggestions of
  ``sum_k (p_k - y_k) ** 2`` over the five stages, ``y`` the one-hot reference: 0 is perfect, 2
  the worst; it scores the whole distribution, not only the suggested stage.

The confidence is the suggested stage's probability, which is usually but not always the
highest of the five (``core.model.stage_confidence``: greedy decoding is not the most probable stage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..base.stages import SLEEP_STAGES, Stage

DEFAULT_BINS = 10

__all__ = ["ReliabilityBin", "Calibration", "reliability_table", "expected_calibration_error",
           "maximum_calibration_error", "brier_score", "calibrate", "format_table", "DEFAULT_BINS"]


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of the reliability table.

    Attributes
    ----------
    lower, upper : float
        The bin's edges (``lower <= c < upper``; the last bin includes 1).
    count : int
        Suggestions whose confidence falls in the bin.
    mean_confidence : float or None
        Their mean confidence (None for an empty bin).
    accuracy : float or None
        The share of them that were right (None for an empty bin).
    """

    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None

    @property
    def gap(self) -> float | None:
        """``accuracy - mean_confidence`` (negative: overconfident); None when empty."""
        if self.count == 0:
            return None
        return self.accuracy - self.mean_confidence


@dataclass(frozen=True)
class Calibration:
    """Everything ``calibrate`` measures.

    Attributes
    ----------
    n : int
        Suggestions scored.
    accuracy : float
        Share that were right.
    mean_confidence : float
        Mean confidence.
    ece, mce : float
        Expected and maximum calibration error over ``bins``.
    brier : float or None
        Multi-class Brier score (None when the five probabilities were not given).
    bins : tuple of ReliabilityBin
        The reliability table.
    """

    n: int
    accuracy: float
    mean_confidence: float
    ece: float
    mce: float
    brier: float | None
    bins: tuple[ReliabilityBin, ...]


def _check(confidences: Sequence[float], correct: Sequence[bool]) -> tuple[list[float], list[bool]]:
    conf = [float(c) for c in confidences]
    right = [bool(r) for r in correct]
    if len(conf) != len(right):
        raise ValueError(f"{len(conf)} confidences but {len(right)} outcomes")
    for c in conf:
        if not (math.isfinite(c) and 0.0 <= c <= 1.0):
            raise ValueError(f"a confidence must be a probability in [0, 1], not {c!r}")
    return conf, right


def _bin_index(c: float, n_bins: int) -> int:
    return min(int(math.floor(c * n_bins)), n_bins - 1)


def reliability_table(confidences: Sequence[float], correct: Sequence[bool],
                      n_bins: int = DEFAULT_BINS) -> list[ReliabilityBin]:
    """The reliability table over ``n_bins`` equal-width bins of [0, 1].

    Parameters
    ----------
    confidences : sequence of float
        Each suggestion's confidence, in [0, 1].
    correct : sequence of bool
        Whether each suggestion was right.
    n_bins : int
        Number of bins (>= 1).

    Returns
    -------
    list of ReliabilityBin
        ``n_bins`` bins in order, empty ones included.

    Raises
    ------
    ValueError
        Different lengths, a confidence outside [0, 1] or not finite, ``n_bins < 1``.
    """
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a whole number >= 1, not {n_bins!r}")
    conf, right = _check(confidences, correct)
    members: list[list[int]] = [[] for _ in range(n_bins)]
    for i, c in enumerate(conf):
        members[_bin_index(c, n_bins)].append(i)
    out = []
    for b, idx in enumerate(members):
        lower, upper = b / n_bins, (b + 1) / n_bins
        if idx:
            mean_c = math.fsum(conf[i] for i in idx) / len(idx)
            acc = sum(right[i] for i in idx) / len(idx)
            out.append(ReliabilityBin(lower, upper, len(idx), mean_c, acc))
        else:
            out.append(ReliabilityBin(lower, upper, 0, None, None))
    return out


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool],
                               n_bins: int = DEFAULT_BINS) -> float:
    """``sum_b (n_b / N) |accuracy_b - confidence_b|`` over equal-width bins (see the module doc).

    Parameters
    ----------
    confidences, correct, n_bins
        As for :func:`reliability_table`.

    Returns
    -------
    float
        The ECE in [0, 1]; NaN for no suggestions.
    """
    bins = reliability_table(confidences, correct, n_bins)
    n = sum(b.count for b in bins)
    if n == 0:
        return math.nan
    return math.fsum(b.count / n * abs(b.accuracy - b.mean_confidence) for b in bins if b.count)


def maximum_calibration_error(confidences: Sequence[float], correct: Sequence[bool],
                              n_bins: int = DEFAULT_BINS) -> float:
    """The largest ``|accuracy_b - confidence_b|`` over the non-empty bins (NaN for none)."""
    gaps = [abs(b.gap) for b in reliability_table(confidences, correct, n_bins) if b.count]
    return max(gaps) if gaps else math.nan


def brier_score(probabilities: Sequence[Mapping], truth: Sequence[Stage]) -> float:
    """Multi-class Brier score: mean of ``sum_k (p_k - [k is truth]) ** 2`` over the five stages.

    Parameters
    ----------
    probabilities : sequence of mappings
        Each suggestion's five probabilities (Stage -> p; a missing stage counts 0).
    truth : sequence of Stage
        The reference stage of each (a sleep stage).

    Returns
    -------
    float
        In [0, 2]; NaN for no suggestions.
    """
    if len(probabilities) != len(truth):
        raise ValueError(f"{len(probabilities)} distributions but {len(truth)} reference stages")
    if not probabilities:
        return math.nan
    total = 0.0
    for p, t in zip(probabilities, truth):
        if t not in SLEEP_STAGES:
            raise ValueError(f"the reference stage must be a sleep stage, not {t!r}")
        total += math.fsum((float(p.get(s, 0.0)) - (1.0 if s is t else 0.0)) ** 2
                           for s in SLEEP_STAGES)
    return total / len(probabilities)


def calibrate(confidences: Sequence[float], correct: Sequence[bool], *,
              probabilities: Sequence[Mapping] | None = None,
              truth: Sequence[Stage] | None = None, n_bins: int = DEFAULT_BINS) -> Calibration:
    """ECE, MCE, the reliability table and (given ``probabilities`` and ``truth``) the Brier score.

    Parameters
    ----------
    confidences, correct, n_bins
        As for :func:`reliability_table`.
    probabilities, truth
        As for :func:`brier_score`; both or neither.

    Returns
    -------
    Calibration
    """
    conf, right = _check(confidences, correct)
    bins = tuple(reliability_table(conf, right, n_bins))
    n = len(conf)
    ece = expected_calibration_error(conf, right, n_bins)
    gaps = [abs(b.gap) for b in bins if b.count]
    brier = None
    if (probabilities is None) != (truth is None):
        raise ValueError("give both probabilities and truth for the Brier score, or neither")
    if probabilities is not None:
        brier = brier_score(probabilities, truth)
    return Calibration(n=n, accuracy=(sum(right) / n) if n else math.nan,
                       mean_confidence=(math.fsum(conf) / n) if n else math.nan, ece=ece,
                       mce=max(gaps) if gaps else math.nan, brier=brier, bins=bins)


def format_table(calibration: Calibration) -> str:
    """The reliability table as Markdown (bin, count, mean confidence, accuracy, gap)."""
    lines = ["| bin | count | mean confidence | accuracy | accuracy - confidence |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for b in calibration.bins:
        last = b.upper >= 1.0
        span = f"[{b.lower:.1f}, {b.upper:.1f}{']' if last else ')'}"
        if b.count:
            lines.append(f"| {span} | {b.count} | {b.mean_confidence:.3f} | {b.accuracy:.3f} "
                         f"| {b.gap:+.3f} |")
        else:
            lines.append(f"| {span} | 0 | - | - | - |")
    return "\n".join(lines)
