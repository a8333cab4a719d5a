"""Subjects and hypnograms: a sleep-cycle model of an adult night.

About 90-minute NREM-REM cycles, N3 concentrated in the first cycles, REM periods lengthening
towards morning, brief awakenings and wake after sleep onset. Subject variability covers the
traits a technologist sees differ between patients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base.stages import Stage


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
        # Slow waves shrink with age (Carrier et al. 2011: lower amplitude and density from the
        # twenties to the sixties); AASM N3 still needs 75 uV, which night._n3_floor guarantees.
        slow_wave_uv=float(np.clip(rng.normal(205 - 1.7 * age, 22), 85, 250)),
        emg_uv=float(rng.uniform(6, 14)),
        impedance_noise_uv=float(rng.uniform(0.5, 2.5)),
        mains_hz=float(rng.choice([50.0, 60.0])),
        mains_uv=float(rng.uniform(0, 6)),
        age=age,
    )


# --- Hypnogram model ---------------------------------------------------------------------------
# A semi-Markov model of the night: bouts of one stage with drawn lengths, the next bout's stage
# drawn from cycle-dependent probabilities. Each NREM-REM cycle has an NREM phase of drawn length
# (N2 with N3 episodes, early cycles mostly, interrupted by brief W and N1 bouts) and then a REM
# period of drawn length (REM bouts broken by brief W / N1 / N2 interruptions). Per-night
# factors vary fragmentation (WASO, awakenings) and slow-wave propensity between nights.
#
# Fitted (by hand, on the statistics of benchmarks/bench_synth_architecture.py;
# docs/measurements/synth-architecture.txt) to the real healthy-adult hypnograms in
# ../shared/data: Dreem DOD-H (25 nights, 5-scorer consensus) and Sleep-EDF sleep-cassette (20
# nights, R&K mapped to AASM). Targets (DOD-H / Sleep-EDF means): sleep-onset latency ~15-20 min,
# WASO ~30-40 min in ~12-24 awakenings (median W bout ~0.9 min), N1 7-10 % of TST in ~30 short
# bouts (median 0.5-1 min), N2 ~53 % in ~35-43 bouts (median 3-4 min), N3 ~16-18 %, REM ~21 %
# in 4-4.5 REM periods, NREM-REM cycle ~95-100 min, REM latency ~95-130 min.
# N3 bouts follow DOD-H (AASM-scored, median ~7.5 min), not Sleep-EDF, whose R&K S3/S4 scoring
# breaks N3 into 1-min pieces. Short nights (< _FULL_TIMING_HOURS) compress the timing.
# Bout lengths are lognormal in epochs: (median epochs, sigma).
_SOL_MEDIAN_MIN, _SOL_SIGMA, _SOL_RANGE_MIN = 12.0, 0.75, (2.0, 75.0)
_FINAL_WAKE_MEDIAN_MIN, _FINAL_WAKE_SIGMA, _FINAL_WAKE_RANGE_MIN = 4.0, 0.6, (1.0, 20.0)
_BOUT = {
    Stage.N1: (1.7, 0.6),
    Stage.N2: (7.0, 1.0),
    Stage.N3: (16.0, 0.9),
    Stage.R: (28.0, 0.7),
}
_W_SHORT, _W_LONG, _W_LONG_P = (1.7, 0.55), (12.0, 0.8), 0.10   # awakenings: brief, or long
_INTERRUPT = {Stage.N1: (1.4, 0.5), Stage.N2: (2.5, 0.7)}        # brief N1 / N2 inside REM
# NREM phase length (min) per cycle: first, later; lognormal sigma.
_NREM_MIN, _NREM_SIGMA = (88.0, 66.0), 0.25
# REM period length (min) per cycle index (last value repeats); lognormal sigma.
_REM_MIN, _REM_SIGMA = (15.0, 24.0, 29.0, 33.0, 35.0), 0.35
# Next bout during the NREM phase, after N2: (W, N1, N3) weights; N3 scaled by the cycle's
# slow-wave propensity, W and N1 by the night's fragmentation (N3 too when that is > 1, so that
# fragmented nights keep their slow-wave sleep).
_AFTER_N2 = (0.15, 0.22, 0.33)
_AFTER_N3 = {Stage.N2: 0.86, Stage.W: 0.10, Stage.N1: 0.04}
_AFTER_N1 = {Stage.N2: 0.80, Stage.W: 0.20}
_AFTER_W = {Stage.N1: 0.85, Stage.N2: 0.15}
# Inside a REM period, the interruption after a REM bout; and how a REM period ends.
_REM_INTERRUPT = {Stage.W: 0.30, Stage.N1: 0.35, Stage.N2: 0.35}
_AFTER_REM = {Stage.W: 0.45, Stage.N1: 0.30, Stage.N2: 0.25}
_FRAGMENTATION_SIGMA = 0.75    # per-night lognormal factor on W / N1 intrusions
_SWS_SIGMA = 0.3                # per-night lognormal factor on N3 propensity
# Nights shorter than this (test / demo excerpts) get proportionally compressed timing (latency,
# cycle and REM period lengths), so that they still show several stages.
_FULL_TIMING_HOURS = 6.0


def _epochs(rng: np.random.Generator, median: float, sigma: float, scale: float = 1.0) -> int:
    return max(1, int(round(median * scale * float(np.exp(sigma * rng.standard_normal())))))


def _pick(rng: np.random.Generator, weights: dict) -> Stage:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _lognormal_min(rng: np.random.Generator, median: float, sigma: float,
                   bounds: tuple[float, float]) -> float:
    return float(np.clip(median * np.exp(sigma * rng.standard_normal()), *bounds))


def _wake_bout(rng: np.random.Generator, scale: float, frag: float) -> int:
    m, s = _W_LONG if rng.random() < min(0.5, _W_LONG_P * frag) else _W_SHORT
    return _epochs(rng, m, s, scale)


def draw_hypnogram(rng: np.random.Generator, hours: float = 8.0) -> list[Stage]:
    """One night's epochs: lights off to lights on, ``hours`` long.

    Starts in W (the sleep-onset latency) and ends in W (the final awakening before lights on).
    A semi-Markov cycle model fitted to real healthy-adult hypnograms (see the constants above).
    Deterministic for a given ``rng`` state.
    """
    n_total = int(hours * 120)
    if n_total <= 0:
        return []
    tscale = min(1.0, hours / _FULL_TIMING_HOURS)
    frag = float(np.clip(np.exp(_FRAGMENTATION_SIGMA * rng.standard_normal()), 0.35, 3.0))
    sws = float(np.exp(_SWS_SIGMA * rng.standard_normal()))
    sol = _lognormal_min(rng, _SOL_MEDIAN_MIN, _SOL_SIGMA, _SOL_RANGE_MIN) * tscale
    final = _lognormal_min(rng, _FINAL_WAKE_MEDIAN_MIN, _FINAL_WAKE_SIGMA, _FINAL_WAKE_RANGE_MIN)
    n_sol = max(1, min(int(round(2 * sol)), n_total // 4))
    n_final = max(1, min(int(round(2 * final)), n_total // 10))
    stages: list[Stage] = [Stage.W] * n_sol
    limit = n_total - n_final
    bout = lambda st, n: stages.extend([st] * n)  # noqa: E731

    cycle = 0
    stage = Stage.N1                                   # sleep onset through N1
    while len(stages) < limit:
        nrem_len = 2 * _NREM_MIN[min(cycle, 1)] * tscale * float(
            np.exp(_NREM_SIGMA * rng.standard_normal()))
        rem_len = 2 * _REM_MIN[min(cycle, len(_REM_MIN) - 1)] * tscale * float(
            np.exp(_REM_SIGMA * rng.standard_normal()))
        n3_drive = sws * max(0.0, 1.0 - cycle / 3.0) ** 1.5
        start = len(stages)
        # NREM phase: until its length has passed, ending on an N2 bout.
        while len(stages) < limit:
            if stage is Stage.W:
                bout(stage, _wake_bout(rng, 1.0, frag))
                stage = _pick(rng, _AFTER_W)
            elif stage is Stage.N1:
                bout(stage, _epochs(rng, *_BOUT[Stage.N1]))
                stage = _pick(rng, _AFTER_N1)
            elif stage is Stage.N3:
                bout(stage, _epochs(rng, *_BOUT[Stage.N3], scale=0.6 + 0.4 * min(1.0, n3_drive)))
                stage = _pick(rng, _AFTER_N3)
            else:
                bout(Stage.N2, _epochs(rng, *_BOUT[Stage.N2]))
                if len(stages) - start >= nrem_len:
                    break
                w, n1, n3 = _AFTER_N2
                stage = _pick(rng, {Stage.W: w * frag, Stage.N1: n1 * frag,
                                    Stage.N3: n3 * n3_drive * max(1.0, frag) + 1e-9})
        # REM period: REM bouts with brief interruptions, until its length has passed.
        rem_start = len(stages)
        while len(stages) < limit:
            bout(Stage.R, min(_epochs(rng, *_BOUT[Stage.R], scale=tscale),
                              max(1, int(rem_len) - (len(stages) - rem_start))))
            if len(stages) - rem_start >= rem_len - 2:
                break
            cut = _pick(rng, _REM_INTERRUPT)
            bout(cut, _wake_bout(rng, 0.6, frag) if cut is Stage.W else _epochs(rng, *_INTERRUPT[cut]))
        stage = _pick(rng, _AFTER_REM)
        cycle += 1
    stages = stages[:limit]
    stages.extend([Stage.W] * (n_total - len(stages)))        # final awakening before lights on
    return stages
