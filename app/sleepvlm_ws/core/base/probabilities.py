"""Stage probabilities as a study stores and a technologist reads them: the five sleep stages'
probabilities as plain JSON (``{"W": p, "N1": p, ...}``), read back strictly, and shown as whole
percent. Who computes them (the model's token probabilities, a second opinion) is elsewhere."""
from __future__ import annotations

import math
from typing import Mapping

from .stages import SLEEP_STAGES, Stage

__all__ = ["probabilities_to_json", "probabilities_from_json", "format_percent"]


def probabilities_to_json(probabilities: Mapping) -> dict[str, float]:
    """``{"W": p, "N1": p, ...}`` in stage order (keys are stage values)."""
    out = {}
    for stage in SLEEP_STAGES:
        value = probabilities.get(stage, probabilities.get(stage.value, 0.0))
        out[stage.value] = float(value)
    return out


def probabilities_from_json(data: object) -> dict[Stage, float] | None:
    """The five probabilities from ``{"W": p, ...}`` (stage values or Stages as keys); None when
    ``data`` is None or not a complete, finite distribution in [0, 1]."""
    if not isinstance(data, Mapping):
        return None
    out = {}
    for stage in SLEEP_STAGES:
        value = data.get(stage.value, data.get(stage))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        value = float(value)
        if not (math.isfinite(value) and -1e-9 <= value <= 1 + 1e-9):
            return None
        out[stage] = min(1.0, max(0.0, value))
    total = sum(out.values())
    if not abs(total - 1.0) <= 1e-6:
        return None
    return out


def format_percent(p: float | None) -> str:
    """``87 %`` (whole percent; ``<1 %`` / ``>99 %`` at the ends); ``—`` when unknown."""
    if p is None or not isinstance(p, (int, float)) or not math.isfinite(p):
        return "\u2014"
    if 0 < p < 0.005:
        return "<1 %"
    if 0.995 <= p < 1:
        return ">99 %"
    return f"{round(100 * p):d} %"
