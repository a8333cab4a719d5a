"""A scoring run's estimate of the seconds left: a moving average of recent epochs per pass."""

from __future__ import annotations

from collections import deque

from ..study.suggestions import FAST, RATIONALE

__all__ = ["RunEta", "ETA_WINDOW", "RATIONALE_COST_GUESS"]

ETA_WINDOW = 16               # epochs in the moving average behind the ETA
# Before the first rationale answer, a rationale is guessed to cost this many fast answers
# (about 5.7x measured on the GPU: 1.36 s vs 0.24 s per request).
RATIONALE_COST_GUESS = 5.0


class RunEta:
    """Seconds left, from a moving average of recent epochs in each pass."""

    def __init__(self, window: int = ETA_WINDOW):
        # answers from N requests in flight arrive in bursts: average over at least 2N of them
        self._recent = {FAST: deque(maxlen=window), RATIONALE: deque(maxlen=window)}

    def add(self, pass_name: str, seconds: float) -> None:
        """One epoch of ``pass_name`` took ``seconds``."""
        self._recent[pass_name].append(seconds)

    def estimate(self, left: dict[str, int]) -> float | None:
        """Seconds for ``left`` (pass -> epochs still to do); None with nothing to go by."""
        mean = {p: (sum(d) / len(d) if d else None) for p, d in self._recent.items()}
        if mean[RATIONALE] is None and mean[FAST] is not None:
            mean[RATIONALE] = mean[FAST] * RATIONALE_COST_GUESS
        total = 0.0
        for pass_name, n in left.items():
            if n:
                if mean[pass_name] is None:
                    return None
                total += n * mean[pass_name]
        return total
