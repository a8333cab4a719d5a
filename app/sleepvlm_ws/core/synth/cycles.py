"""Subjects and hypnograms: a sleep-cycle model of an adult night.

About 90-minute NREM-REM cycles, N3 concentrated in the first cycles, REM periods lengthening
towards morning, brief awakenings and wake after sleep onset. Subject variability covers the
traits a technologist sees differ between patients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stages import Stage


@dataclass(frozen=True)
class Subject:
    alpha_hz: float            # posterior dominant rhythm frequency
    alpha_uv: float            # alpha amplitude (O2, eyes closed); ~0 for non-alpha producers
    spindle_hz: float          # spindle frequency
    spindle_per_min: float     # spindle density in N2
    slow_wave_uv: float        # typical slow-wave peak-to-peak on F4 (falls with age)
    emg_uv: float              # chin EMG RMS awake
    impedance_noise_uv: float  # white electrode noise
    mains_hz: float            # 50 or 60
    mains_uv: float            # residual mains interference
    age: int


def draw_subject(rng: np.random.Generator) -> Subject:
    age = int(rng.integers(20, 75))
    alpha_producer = rng.random() > 0.1
    return Subject(
        alpha_hz=float(rng.uniform(8.5, 11.5)),
        alpha_uv=float(rng.uniform(20, 45)) if alpha_producer else float(rng.uniform(0, 4)),
        spindle_hz=float(rng.uniform(11.5, 14.5)),
        spindle_per_min=float(rng.uniform(2.0, 6.0)),
        slow_wave_uv=float(np.clip(rng.normal(190 - 1.3 * age, 25), 95, 260)),
        emg_uv=float(rng.uniform(6, 14)),
        impedance_noise_uv=float(rng.uniform(0.5, 2.5)),
        mains_hz=float(rng.choice([50.0, 60.0])),
        mains_uv=float(rng.uniform(0, 6)),
        age=age,
    )


def _run(stages: list[Stage], stage: Stage, minutes: float, rng: np.random.Generator) -> None:
    n = max(1, int(round(minutes * 2 * rng.uniform(0.8, 1.2))))
    stages.extend([stage] * n)


def draw_hypnogram(rng: np.random.Generator, hours: float = 8.0) -> list[Stage]:
    """One night's epochs: lights off to lights on, ``hours`` long."""
    n_total = int(hours * 120)
    stages: list[Stage] = []
    _run(stages, Stage.W, rng.uniform(6, 25), rng)           # sleep onset latency
    cycle = 0
    while len(stages) < n_total:
        late = min(cycle / 4.0, 1.0)
        _run(stages, Stage.N1, rng.uniform(1, 5), rng)
        _run(stages, Stage.N2, rng.uniform(15, 30) + 12 * late, rng)
        n3 = max(0.0, rng.normal(35 * (1 - late) ** 1.5, 6))
        if n3 > 2:
            _run(stages, Stage.N3, n3, rng)
            _run(stages, Stage.N2, rng.uniform(5, 15), rng)
        if rng.random() < 0.5:                               # brief awakening / arousal to N1
            _run(stages, Stage.W, rng.uniform(0.5, 3), rng)
            _run(stages, Stage.N1, rng.uniform(0.5, 2), rng)
            _run(stages, Stage.N2, rng.uniform(3, 8), rng)
        _run(stages, Stage.R, 6 + 18 * late + rng.uniform(-2, 5), rng)
        if rng.random() < 0.35:
            _run(stages, Stage.W, rng.uniform(1, 6), rng)      # WASO
        cycle += 1
    stages = stages[: n_total - 10]
    stages.extend([Stage.W] * (n_total - len(stages)))        # final awakening before lights on
    return stages
