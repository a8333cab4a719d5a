"""A fused stage: the model's stage probabilities pooled with a real-trained second opinion's.

The default model was trained on generated PSG only; YASA's stager was trained on thousands of
real nights. One honest way to bring real knowledge into a suggestion is to pool the two
distributions and say so. The rule is fixed, not fitted: a log-linear pool (the normalised
weighted geometric mean, a "product of experts") with equal weights, each probability floored at
``FLOOR`` so one scorer's near-zero cannot veto a stage on its own. It was chosen before any
fused figure was looked at on real data, and it is not tuned on the DREAMS dev set (evaluation
only; see docs/measurements/dreams-dev-evaluations.md).

No Qt; pure functions of two distributions.
"""

from __future__ import annotations

import math
from typing import Mapping

from ..base.stages import SLEEP_STAGES, Stage

__all__ = ["FUSION_RULE", "FLOOR", "fuse", "fused_stage"]

FUSION_RULE = "log-linear pool of the model's and YASA's stage probabilities, equal weights"
FLOOR = 1e-3


def _get(probabilities: Mapping, stage: Stage) -> float:
    value = probabilities.get(stage, probabilities.get(stage.value, 0.0))
    value = float(value) if value is not None else 0.0
    return value if math.isfinite(value) and value > 0.0 else 0.0


def fuse(model: Mapping, second: Mapping, model_weight: float = 0.5) -> dict[Stage, float]:
    """Pool two five-stage distributions.

    Parameters
    ----------
    model, second : mapping
        Stage (or stage value) -> probability, for the five sleep stages; missing stages count 0.
    model_weight : float
        Weight of ``model`` in the pool, in [0, 1]; ``second`` gets ``1 - model_weight``.
        The workstation uses the default, 0.5.

    Returns
    -------
    dict
        Stage -> pooled probability, summing to 1: ``p ∝ max(pm, FLOOR)^w · max(ps, FLOOR)^(1-w)``.
    """
    if not 0.0 <= model_weight <= 1.0:
        raise ValueError(f"model_weight must be within [0, 1], not {model_weight}")
    logs = {s: model_weight * math.log(max(_get(model, s), FLOOR))
            + (1.0 - model_weight) * math.log(max(_get(second, s), FLOOR)) for s in SLEEP_STAGES}
    top = max(logs.values())
    raw = {s: math.exp(v - top) for s, v in logs.items()}
    total = sum(raw.values())
    return {s: v / total for s, v in raw.items()}


def fused_stage(model: Mapping, second: Mapping, model_weight: float = 0.5) -> Stage:
    """The stage with the highest pooled probability (ties: AASM stage order W, N1, N2, N3, R).

    Parameters
    ----------
    model, second : mapping
        As for ``fuse``.
    model_weight : float
        As for ``fuse``.

    Returns
    -------
    Stage
    """
    pooled = fuse(model, second, model_weight)
    return max(SLEEP_STAGES, key=lambda s: (pooled[s], -SLEEP_STAGES.index(s)))
