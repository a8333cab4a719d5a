"""Stage probabilities as a study stores and a technologist reads them: the five sleep stages'
probabilities as plain JSON (``{"W": p, "N1": p, ...}``), read back strictly, and shown as whole
percent. Who computes them (the model's token probabilities, a second opinion) is elsewhere."""
from __future__ import annotations

import math
from typing import Mapping

from .stages import SLEEP_STAGES, Stage

__all__ = ["probabilities_to_json", "probabilities_from_json", "format_percent"]


def probabilities_to_json(probabilities: Mapping) -> dict[str, float]:
    """The five stage probabilities as plain JSON: ``{"W": p, "N1": p, ...}`` in stage order.

    Parameters
    ----------
    probabilities : mapping
        Stage -> probability; keys may be Stages or their values (``"W"``, ``"N1"``, ...). A stage
        that is absent becomes 0.0; other keys are ignored. Values are not checked.

    Returns
    -------
    dict of str to float
        ``"W"``, ``"N1"``, ``"N2"``, ``"N3"``, ``"R"`` -> probability, in that order.
    """
    out = {}
    for stage in SLEEP_STAGES:
        value = probabilities.get(stage, probabilities.get(stage.value, 0.0))
        out[stage.value] = float(value)
    return out


def probabilities_from_json(data: object) -> dict[Stage, float] | None:
    """The five stage probabilities read back strictly from ``{"W": p, ...}``.

    Parameters
    ----------
    data : object
        What the study stored: a mapping with stage values or Stages as keys. Anything else
        (None included) reads as no probabilities.

    Returns
    -------
    dict of Stage to float or None
        W, N1, N2, N3, R -> probability, each clipped into [0, 1]. None when ``data`` is not a
        mapping, lacks a stage, holds a value that is not a finite number in [0, 1] (booleans are
        refused), or its five values do not sum to 1 (within 1e-6).
    """
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
    """A probability as the technologist reads it: whole percent, e.g. ``87 %``.

    Parameters
    ----------
    p : float or None
        A probability in [0, 1].

    Returns
    -------
    str
        ``"<1 %"`` for 0 < p < 0.005 and ``">99 %"`` for 0.995 <= p < 1; otherwise ``round(100 * p)``
        and `` %`` (Python rounds halves to even: exactly 0.005 shows ``0 %``); ``"—"`` when ``p``
        is None, not a number or not finite.
    """
    if p is None or not isinstance(p, (int, float)) or not math.isfinite(p):
        return "\u2014"
    if 0 < p < 0.005:
        return "<1 %"
    if 0.995 <= p < 1:
        return ">99 %"
    return f"{round(100 * p):d} %"
