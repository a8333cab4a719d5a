"""Agreement between two scorings of one night (the technologist's and the AI's, or two
technologists'): Cohen's kappa, accuracy, macro-F1, per-stage recall and precision, and the
confusion matrix.

Only epochs that *both* scorings gave one of the five stages (W, N1, N2, N3, R) are compared;
an epoch unscored, artefact or ``None`` (the AI named no stage) on either side is left out and
counted in ``n_excluded``. The confusion matrix always has the five stages in that order, rows
the reference, columns the compared scoring.

Undefined figures are ``None`` rather than NaN (so ``to_dict`` is plain JSON): kappa when the
chance agreement is 1 (both scorings used the same single stage throughout), a stage's recall
when the reference never used it, its precision when the compared scoring never used it.
Macro-F1 averages the F1 of every stage either scoring used (a stage one side never used has
F1 0), as ``sklearn.metrics.f1_score(average="macro", zero_division=0)`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ...errors import InputError
from ..base.stages import SLEEP_STAGES, Stage


class NoCommonEpochsError(InputError, ValueError):
    """The two scorings share no epoch that both gave a sleep stage."""


@dataclass(frozen=True)
class Agreement:
    n_epochs: int                 # epochs compared
    n_excluded: int               # epochs left out (not a stage on one side or both)
    stages: tuple[Stage, ...]     # the order of the matrix and the per-stage figures
    confusion: tuple[tuple[int, ...], ...]  # rows reference, columns compared
    accuracy: float
    kappa: float | None
    macro_f1: float
    recall: dict                  # Stage -> float | None
    precision: dict               # Stage -> float | None
    f1: dict                      # Stage -> float | None (None: neither side used it)

    @property
    def n_agree(self) -> int:
        return sum(self.confusion[i][i] for i in range(len(self.stages)))

    def to_dict(self) -> dict:
        """Plain JSON: stages by their short names (``W``, ``N1``, ``N2``, ``N3``, ``R``)."""
        names = [s.value for s in self.stages]
        return {
            "n_epochs": self.n_epochs,
            "n_excluded": self.n_excluded,
            "accuracy": self.accuracy,
            "kappa": self.kappa,
            "macro_f1": self.macro_f1,
            "stages": names,
            "recall": {s.value: self.recall[s] for s in self.stages},
            "precision": {s.value: self.precision[s] for s in self.stages},
            "f1": {s.value: self.f1[s] for s in self.stages},
            "confusion": {"rows": "reference", "columns": "compared", "labels": names,
                          "counts": [list(row) for row in self.confusion]},
        }


def agreement(reference: Sequence[Optional[Stage]],
              compared: Sequence[Optional[Stage]]) -> Agreement:
    """Agreement of ``compared`` with ``reference`` (same epoch grid, same length).

    Only epochs that both scorings gave W, N1, N2, N3 or R are compared; the others are counted
    in ``n_excluded``.

    Parameters
    ----------
    reference : sequence of Stage or None
        The reference scoring, one entry per epoch (e.g. the technologist's final stages): the
        confusion matrix's rows.
    compared : sequence of Stage or None
        The scoring held against it (e.g. the AI's suggested stages, None where it named none):
        the columns.

    Returns
    -------
    Agreement
        Cohen's kappa, accuracy, macro-F1, per-stage recall, precision and F1 and the 5 x 5
        confusion matrix; undefined figures are None (see the module's notes).

    Raises
    ------
    ValueError
        When the two scorings differ in length.
    NoCommonEpochsError
        When no epoch has a sleep stage in both (an InputError and a ValueError).
    """
    if len(reference) != len(compared):
        raise ValueError(f"the two scorings cover different numbers of epochs "
                         f"({len(reference)} and {len(compared)})")
    stages = tuple(SLEEP_STAGES)
    index = {s: i for i, s in enumerate(stages)}
    k = len(stages)
    matrix = [[0] * k for _ in range(k)]
    n = 0
    for ref, cmp in zip(reference, compared):
        if ref in index and cmp in index:
            matrix[index[ref]][index[cmp]] += 1
            n += 1
    if n == 0:
        raise NoCommonEpochsError(None, "no epoch has a sleep stage in both scorings; "
                                        "nothing to compare")
    rows = [sum(matrix[i]) for i in range(k)]
    cols = [sum(matrix[i][j] for i in range(k)) for j in range(k)]
    agree = sum(matrix[i][i] for i in range(k))
    accuracy = agree / n
    chance = sum(rows[i] * cols[i] for i in range(k)) / (n * n)
    kappa = None if chance >= 1.0 else (accuracy - chance) / (1.0 - chance)

    recall, precision, f1 = {}, {}, {}
    used = []
    for i, stage in enumerate(stages):
        tp = matrix[i][i]
        recall[stage] = tp / rows[i] if rows[i] else None
        precision[stage] = tp / cols[i] if cols[i] else None
        if rows[i] or cols[i]:
            used.append(stage)
            f1[stage] = 2 * tp / (rows[i] + cols[i])   # 0 when only one side used it
        else:
            f1[stage] = None
    macro_f1 = sum(f1[s] for s in used) / len(used)
    return Agreement(n_epochs=n, n_excluded=len(reference) - n, stages=stages,
                     confusion=tuple(tuple(r) for r in matrix), accuracy=accuracy, kappa=kappa,
                     macro_f1=macro_f1, recall=recall, precision=precision, f1=f1)
