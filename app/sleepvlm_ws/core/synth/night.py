"""Assemble a whole synthetic night and write it as EDF+ with its hypnogram as annotations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyedflib
from scipy.signal import butter, sosfiltfilt

from ..base.hypnogram import Hypnogram
from ..base.stages import EPOCH_SECONDS, Stage
from ..study.formats.edf_plus import LABELS
from . import waveforms as wf
from .cycles import Subject, draw_hypnogram, draw_subject

EEG = ("F4-M1", "C4-M1", "O2-M1")
# Per-stage RMS (uV) of background bands at the central lead; regional weights below.
_BANDS = {  # stage: (delta 0.5-2, theta 4-7, beta 15-30, broadband 0.5-30, sigma 11-16)
    Stage.W: (3.0, 3.0, 4.0, 5.0, 1.2),
    Stage.N1: (6.5, 7.0, 2.0, 5.5, 1.2),
    Stage.N2: (13.0, 9.0, 1.8, 5.0, 3.0),
    Stage.N3: (0.0, 10.0, 2.0, 6.0, 3.0),  # delta set from the subject's slow-wave amplitude
    Stage.R: (7.0, 6.0, 2.5, 6.0, 1.0),
    Stage.ARTEFACT: (6.0, 6.0, 6.0, 6.0, 2.0),
    Stage.UNSCORED: (6.0, 6.0, 2.0, 5.0, 1.5),
}
# The sigma column is the background of the spindle band between discrete spindles: real N2
# carries several times the sigma power of wake even outside detected spindles (spindle-band
# power is what "sigma" stagers, YASA included, read).
# Spectral exponent of the aperiodic (1/f) background per stage (see wf.aperiodic_pair): flattest
# in wake, steepening with NREM depth, REM in between (Lendner 2020; Schneider 2022, 1-40 Hz).
_APERIODIC_EXPONENT = {Stage.W: 1.0, Stage.N1: 1.3, Stage.N2: 1.6, Stage.N3: 1.9, Stage.R: 1.45,
                       Stage.ARTEFACT: 1.0, Stage.UNSCORED: 1.3}
_REGION = {"F4-M1": (1.25, 1.0, 0.8), "C4-M1": (1.0, 1.0, 1.0), "O2-M1": (0.7, 0.8, 1.0)}  # delta, theta, beta
_ALPHA_REGION = {"F4-M1": 0.3, "C4-M1": 0.55, "O2-M1": 1.0}
_EMG_GAIN = {Stage.W: 1.0, Stage.N1: 0.6, Stage.N2: 0.45, Stage.N3: 0.4, Stage.R: 0.12,
             Stage.ARTEFACT: 1.0, Stage.UNSCORED: 0.5}


@dataclass
class SyntheticNight:
    subject: Subject
    stages: list[Stage]
    fs: float
    signals: dict[str, np.ndarray]              # label -> uV, float32
    events: list[tuple[float, str]] = field(default_factory=list)  # (seconds, kind) planted


def _epoch_gain(stages: list[Stage], values: dict[Stage, float], fs: float, n: int,
                smooth_s: float = 2.0) -> np.ndarray:
    """Per-sample gain following the hypnogram, with ``smooth_s`` transitions between epochs."""
    return _epoch_series(np.array([values[s] for s in stages], dtype=np.float32), fs, n, smooth_s)


def _epoch_series(per_epoch: np.ndarray, fs: float, n: int, smooth_s: float = 2.0) -> np.ndarray:
    """Per-sample gain from one value per epoch, with ``smooth_s`` transitions between epochs."""
    g = np.repeat(np.asarray(per_epoch, dtype=np.float32), int(EPOCH_SECONDS * fs))[:n]
    k = max(1, int(smooth_s * fs))
    c = np.cumsum(np.concatenate([np.full(k, g[0]), g, np.full(k, g[-1])]), dtype=np.float64)
    return ((c[2 * k:2 * k + n] - c[k:k + n]) / k).astype(np.float32)


def _n3_depth(stages: list[Stage], rng: np.random.Generator) -> np.ndarray:
    """Slow-wave depth factor per epoch: 1 outside N3; inside an N3 episode it rises over the
    first ~2 minutes and falls over the last one, with +-10% epoch-to-epoch variation."""
    depth = np.ones(len(stages), dtype=np.float32)
    i = 0
    while i < len(stages):
        if stages[i] is not Stage.N3:
            i += 1
            continue
        j = i
        while j < len(stages) and stages[j] is Stage.N3:
            j += 1
        for k in range(i, j):
            edge = min(k - i, (j - 1 - k) * 2)          # epochs from the episode's nearer edge
            depth[k] = (0.7 + 0.35 * min(1.0, edge / 4.0)) * rng.uniform(0.9, 1.1)
        i = j
    return depth


def _n3_floor(stages: list[Stage], f4_delta: np.ndarray, fs: float, need_s: int = 10,
              need_uv: float = 85.0) -> np.ndarray:
    """Per-epoch gain (>= 1) so each N3 epoch's F4 slow waves, measured as a technologist would
    (0.5-2 Hz zero-phase band-pass, peak-to-peak per 1-s window), exceed ``need_uv`` in at least
    ``need_s`` windows. AASM N3.1 asks 75 uV in 6 s; the margin covers the rest of the signal
    adding to or cancelling the slow waves."""
    spe = int(EPOCH_SECONDS * fs)
    sec = int(fs)
    gain = np.ones(len(stages), dtype=np.float32)
    n3 = [e for e, stage in enumerate(stages) if stage is Stage.N3]
    if not n3:
        return gain
    measured = sosfiltfilt(butter(2, [0.5, 2.0], btype="bandpass", fs=fs, output="sos"), f4_delta)
    for e in n3:
        x = measured[e * spe:e * spe + 30 * sec].reshape(30, sec)
        ptp = np.sort(x.max(axis=1) - x.min(axis=1))[::-1]
        gain[e] = max(1.0, need_uv / max(float(ptp[need_s - 1]), 1e-6))
    return gain


def _aperiodic(steep: np.ndarray, pink: np.ndarray, brown: np.ndarray, own_pink: np.ndarray,
               own_brown: np.ndarray) -> np.ndarray:
    """Aperiodic background at one lead: half shared with the other leads (volume conduction),
    half its own, mixed between the 1/f and 1/f^2 noises by the stage's ``steep`` weight."""
    return (1.0 - steep) * (0.5 * pink + 0.5 * own_pink) + steep * (0.5 * brown + 0.5 * own_brown)


def generate_night(seed: int = 0, hours: float = 8.0, fs: float = 256.0,
                   stages: list[Stage] | None = None, subject: Subject | None = None) -> SyntheticNight:
    """Draw a subject and a night (or use the given ones) and synthesise all six roles."""
    rng = np.random.default_rng(seed)
    subject = subject or draw_subject(rng)
    stages = list(stages) if stages is not None else draw_hypnogram(rng, hours)
    spe = int(EPOCH_SECONDS * fs)
    n = len(stages) * spe
    sw_rms = subject.slow_wave_uv / 3.0
    bands = {s: v for s, v in _BANDS.items()}
    bands[Stage.N3] = (sw_rms, *_BANDS[Stage.N3][1:])

    gains = {name: _epoch_gain(stages, {s: bands[s][i] for s in bands}, fs, n)
             for i, name in enumerate(("delta", "theta", "beta", "broad", "sigma"))}
    # Slow-wave activity builds up over an N3 episode and fades at its end, varies from epoch to
    # epoch, and comes in waxing/waning trains, so slow waves fill from about a third to all of an
    # epoch (AASM N3: >= 20%); lighter in older subjects through their smaller slow waves.
    gains["delta"] *= _epoch_series(_n3_depth(stages, rng), fs, n)
    n3_time = _epoch_gain(stages, {s: float(s is Stage.N3) for s in bands}, fs, n)
    gains["delta"] *= 1.0 + n3_time * (wf.slow_envelope(n, fs, rng, period_s=6.0, depth=0.6) - 1.0)
    # Weight of the steep (1/f^2) half of the aperiodic background, per epoch.
    steep = _epoch_gain(stages, {s: e - 1.0 for s, e in _APERIODIC_EXPONENT.items()}, fs, n)
    alpha_on = {Stage.W: 1.0, Stage.N1: 0.08, Stage.N2: 0.08, Stage.N3: 0.06, Stage.R: 0.12,
                Stage.ARTEFACT: 0.5, Stage.UNSCORED: 0.3}
    alpha_gain = _epoch_gain(stages, alpha_on, fs, n) * subject.alpha_uv * 0.5
    # Eyes open for stretches of wake: alpha blocked, blinks and REMs instead.
    eyes_open = (wf.slow_envelope(n, fs, rng, period_s=20.0, depth=1.0) > 1.45).astype(np.float32)
    eyes_open *= (_epoch_gain(stages, {s: float(s is Stage.W) for s in bands}, fs, n, 0.5) > 0.5)
    alpha_gain *= 1.0 - 0.85 * eyes_open
    # Drowsiness (N1) in alpha producers: the alpha rhythm is not simply turned down but breaks
    # up - brief fragments of a few seconds return between LAMF stretches, together well under
    # half of the epoch (AASM N1: alpha replaced by LAMF for more than half of the epoch).
    fragments = (wf.slow_envelope(n, fs, rng, period_s=3.0, depth=1.0) > 1.85).astype(np.float32)
    n1_time = _epoch_gain(stages, {s: float(s is Stage.N1) for s in bands}, fs, n, 0.5)
    alpha_gain += n1_time * fragments * 0.5 * subject.alpha_uv * 0.4

    shared = {b: wf.band_noise(n, fs, lo, hi, rng)
              for b, (lo, hi) in {"delta": (0.5, 2.0), "theta": (4.0, 7.0), "beta": (15.0, 30.0),
                                  "sigma": (11.0, 16.0)}.items()}
    shared_pink, shared_brown = wf.aperiodic_pair(n, fs, rng)
    alpha = wf.band_noise(n, fs, subject.alpha_hz - 0.8, subject.alpha_hz + 0.8, rng)
    alpha *= wf.slow_envelope(n, fs, rng, period_s=4.0, depth=0.4)

    delta = {name: _REGION[name][0] * (0.8 * shared["delta"] + 0.2 * wf.band_noise(n, fs, 0.5, 2.0, rng))
             for name in EEG}
    # Every epoch labelled N3 must meet the N3 rule on F4: where a light epoch falls short,
    # deepen its slow waves just enough (the label is the ground truth; the signal must honour it).
    gains["delta"] *= _epoch_series(_n3_floor(stages, gains["delta"] * delta["F4-M1"], fs), fs, n, 0.5)

    out: dict[str, np.ndarray] = {}
    events: list[tuple[float, str]] = []
    for name in EEG:
        wd, wt, wb = _REGION[name]
        x = (gains["delta"] * delta[name]
             + wt * gains["theta"] * (0.6 * shared["theta"] + 0.4 * wf.band_noise(n, fs, 4.0, 7.0, rng))
             + wb * gains["beta"] * wf.band_noise(n, fs, 15.0, 30.0, rng)
             + wt * gains["sigma"] * (0.6 * shared["sigma"] + 0.4 * wf.band_noise(n, fs, 11.0, 16.0, rng))
             + gains["broad"] * _aperiodic(steep, shared_pink, shared_brown, *wf.aperiodic_pair(n, fs, rng))
             + _ALPHA_REGION[name] * alpha_gain * alpha)
        out[name] = x.astype(np.float32)

    loc = np.zeros(n, np.float32)
    roc = np.zeros(n, np.float32)
    chin = (subject.emg_uv * _epoch_gain(stages, _EMG_GAIN, fs, n) * wf.band_noise(n, fs, 12.0, 110.0, rng))

    for e, stage in enumerate(stages):
        t0 = e * spe

        def at(sec: float) -> int:
            return t0 + int(sec * fs)

        if stage is Stage.N2 or stage is Stage.N3:
            n_sp = rng.poisson(subject.spindle_per_min / 2 * (1.0 if stage is Stage.N2 else 0.4))
            for _ in range(n_sp):
                s = rng.uniform(0, 29)
                sp = wf.spindle(fs, subject.spindle_hz + rng.normal(0, 0.4), rng.uniform(0.6, 1.8),
                                rng.uniform(14, 28))
                for name, w in (("C4-M1", 1.0), ("F4-M1", 0.7), ("O2-M1", 0.35)):
                    wf.add_at(out[name], at(s), w * sp)
                events.append((e * EPOCH_SECONDS + s, "spindle"))
        if stage is Stage.N2 and rng.random() < 0.6:
            for _ in range(rng.integers(1, 3)):
                s = rng.uniform(0, 29)
                kc = wf.k_complex(fs, rng.uniform(90, 170))
                for name, w in (("F4-M1", 1.0), ("C4-M1", 0.85), ("O2-M1", 0.45)):
                    wf.add_at(out[name], at(s), w * kc)
                events.append((e * EPOCH_SECONDS + s, "k_complex"))
        if stage is Stage.N1:
            for _ in range(rng.poisson(1.0)):
                s = rng.uniform(0, 29.5)
                vw = wf.vertex_wave(fs, rng.uniform(40, 80))
                for name, w in (("C4-M1", 1.0), ("F4-M1", 0.6), ("O2-M1", 0.3)):
                    wf.add_at(out[name], at(s), w * vw)
                events.append((e * EPOCH_SECONDS + s, "vertex_wave"))
            for _ in range(rng.poisson(1.5)):       # slow eye movements, out of phase
                s = rng.uniform(0, 27)
                sem = wf.eye_movement(fs, rng.uniform(40, 90) * rng.choice([-1, 1]),
                                      rng.uniform(0.8, 1.6), rng.uniform(0.2, 1.0))
                wf.add_at(loc, at(s), sem)
                wf.add_at(roc, at(s), -sem)
                events.append((e * EPOCH_SECONDS + s, "sem"))
        if stage is Stage.R:
            phasic = rng.random() < 0.7
            burst_s = rng.uniform(3, 24)
            if phasic:                               # phasic REM: a burst of rapid eye movements
                s = burst_s
                for _ in range(rng.integers(2, 7)):
                    rem = wf.eye_movement(fs, rng.uniform(50, 130) * rng.choice([-1, 1]),
                                          rng.uniform(0.08, 0.25), rng.uniform(0.1, 0.5))
                    wf.add_at(loc, at(s), rem)
                    wf.add_at(roc, at(s), -rem)
                    events.append((e * EPOCH_SECONDS + s, "rem"))
                    s += rng.uniform(0.5, 1.5)
            # Sawtooth waves often herald a burst of REMs: most trains end shortly before one.
            if rng.random() < (0.5 if phasic else 0.2):
                s = burst_s - rng.uniform(1.5, 3.5) if phasic else rng.uniform(0, 27)
                st = wf.sawtooth_train(fs, rng.uniform(2.5, 5.0), rng.uniform(1.5, 3.0), rng.uniform(15, 30))
                wf.add_at(out["C4-M1"], at(s), st)
                wf.add_at(out["F4-M1"], at(s), 0.6 * st)
                events.append((e * EPOCH_SECONDS + s, "sawtooth"))
            # Transient muscle activity on atonia (phasic REM): short irregular bursts, usually
            # < 0.25 s (AASM), a few times the waking tone, more often during eye-movement bursts.
            for _ in range(rng.poisson(1.0 if phasic else 0.4)):
                s = rng.uniform(0, 29.7)
                tw = (rng.uniform(2.0, 4.0) * subject.emg_uv
                      * wf.band_noise(int(rng.uniform(0.08, 0.25) * fs), fs, 20.0, 110.0, rng))
                wf.add_at(chin, at(s), tw)
        if stage is Stage.W:
            s = rng.uniform(0, 3)
            while s < 29.6:
                i = at(s)
                if eyes_open[min(i, n - 1)] > 0:
                    b = wf.blink(fs, rng.uniform(80, 180))
                    wf.add_at(loc, i, b)
                    wf.add_at(roc, i, b)
                    wf.add_at(out["F4-M1"], i, 0.25 * b)
                    events.append((e * EPOCH_SECONDS + s, "blink"))
                    if rng.random() < 0.5:
                        rem = wf.eye_movement(fs, rng.uniform(60, 150) * rng.choice([-1, 1]),
                                              rng.uniform(0.1, 0.3), rng.uniform(0.3, 1.0))
                        wf.add_at(loc, i + int(0.8 * fs), rem)
                        wf.add_at(roc, i + int(0.8 * fs), -rem)
                s += rng.uniform(1.5, 4.0)

    # EOG picks up frontal EEG; every lead gets electrode noise, mains, ECG and the odd artefact.
    loc += 0.35 * out["F4-M1"]
    roc += 0.35 * out["F4-M1"]
    out["LOC"] = loc
    out["ROC"] = roc
    out["CHIN"] = chin.astype(np.float32)
    t = np.arange(n, dtype=np.float64) / fs
    ecg = wf.ecg_artifact(n, fs, rng.uniform(55, 75), 1.0, rng)
    mains = np.sin(2 * np.pi * subject.mains_hz * t).astype(np.float32) if subject.mains_hz < fs / 2 else 0.0
    # Slow electrode drift: second order at 0.05 Hz, so it stays below the 0.3-Hz high-pass of
    # the display and of stagers (a first-order drift at 0.08 Hz leaked ~35% of wake's 0.4-30 Hz
    # power into 0.4-1 Hz and made relaxed wake look like slow-wave activity to YASA).
    drift_sos = wf.signal.butter(2, 0.05, fs=fs, output="sos")
    for name, x in out.items():
        x += subject.impedance_noise_uv * rng.standard_normal(n).astype(np.float32)
        x += subject.mains_uv * mains
        x += (8.0 if name == "CHIN" else 3.0) * ecg
        if name != "CHIN":  # sweat / slow electrode drift on the scalp and eye leads
            drift = wf.signal.sosfilt(drift_sos, rng.standard_normal(n)).astype(np.float32)
            x += 25.0 * drift / (drift.std() + 1e-9)
        for _ in range(rng.poisson(0.5 * len(stages) / 120)):   # ~0.5 pops per hour per lead
            wf.add_at(x, int(rng.uniform(0, n)), wf.electrode_pop(fs, rng.uniform(100, 300)))
    events.sort()
    return SyntheticNight(subject=subject, stages=stages, fs=fs, signals=out, events=events)


# EDF labels for the six roles as labs write them.
EDF_LABELS = {"F4-M1": "EEG F4-M1", "C4-M1": "EEG C4-M1", "O2-M1": "EEG O2-M1",
              "LOC": "EOG E1-M2", "ROC": "EOG E2-M1", "CHIN": "EMG Chin1-Chin2"}

def write_night_edf(night: SyntheticNight, path: str | Path,
                    start: datetime = datetime(2026, 1, 15, 22, 30, 0),
                    with_hypnogram: bool = True) -> Path:
    """Write the night as EDF+ (digital range +-32767, physical +-3276.7 uV = 0.1 uV resolution)."""
    path = Path(path)
    labels = list(EDF_LABELS)
    writer = pyedflib.EdfWriter(str(path), len(labels), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        headers = []
        for role in labels:
            headers.append({"label": EDF_LABELS[role], "dimension": "uV", "sample_frequency": night.fs,
                            "physical_min": -3276.7, "physical_max": 3276.7,
                            "digital_min": -32767, "digital_max": 32767,
                            "transducer": "AgAgCl electrode", "prefilter": "HP:0.1Hz LP:100Hz"})
        writer.setSignalHeaders(headers)
        writer.setStartdatetime(start)
        writer.setPatientCode("SYNTH-DEMO")
        writer.setEquipment("sleepvlm-ws_synthetic")
        data = [np.clip(night.signals[r], -3276.7, 3276.7).astype(np.float64) for r in labels]
        writer.writeSamples(data)
        if with_hypnogram:  # Sleep-EDF style runs, as the hypnogram exporter writes them

            for onset, duration, stage in Hypnogram(stages=list(night.stages)).segments():
                writer.writeAnnotation(onset, duration, LABELS[stage])
    finally:
        writer.close()
    return path
