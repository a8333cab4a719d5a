"""Signal elements a technologist recognises, each drawn from its AASM definition.

All functions return microvolts and are pure given their random generator. Polarity follows
the trace as displayed (positive up); amplitudes are peak values unless named peak-to-peak.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, signal


def band_noise(n: int, fs: float, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise band-limited to lo..hi Hz (2nd-order Butterworth on white noise)."""
    hi = min(hi, 0.45 * fs)
    sos = signal.butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(n + int(4 * fs)))[int(4 * fs):]
    return (x / (x.std() + 1e-12)).astype(np.float32)


def aperiodic_pair(n: int, fs: float, rng: np.random.Generator, lo: float = 0.3,
                   hi: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """The scale-free (1/f) background of the EEG: two unit-RMS noises sharing one set of phases,
    with power falling as 1/f (exponent 1, alert wake) and 1/f^2 (exponent 2, deep NREM).

    Real sleep EEG is not a sum of flat bands: under its rhythms lies an aperiodic component
    whose spectral exponent steepens from wake through N1 and N2 to N3 (REM in between; Lendner
    et al. 2020, eLife 9:e55092). Mixing the two noises per epoch gives the exponent in between.
    Shaped in the frequency domain (one FFT), so it costs little even for a whole night.
    """
    spec = fft.rfft(rng.standard_normal(n).astype(np.float32))
    f = np.fft.rfftfreq(n, 1.0 / fs).astype(np.float32)
    band = (f >= lo) & (f <= min(hi, 0.45 * fs))
    f_safe = np.where(band, f, 1.0)
    out = []
    for exponent in (1.0, 2.0):
        shaped = np.where(band, spec * f_safe ** (-exponent / 2), 0).astype(np.complex64)
        x = fft.irfft(shaped, n).astype(np.float32)
        out.append(x / (x.std() + 1e-12))
    return out[0], out[1]


def slow_envelope(n: int, fs: float, rng: np.random.Generator, period_s: float = 8.0,
                  depth: float = 0.5) -> np.ndarray:
    """Positive waxing/waning gain around 1 (e.g. the alpha rhythm's spindle-like modulation)."""
    sos = signal.butter(1, 1.0 / period_s, fs=fs, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(n + int(period_s * fs)))[int(period_s * fs):]
    x = x / (x.std() + 1e-12)
    return np.clip(1.0 + depth * x, 0.1, None).astype(np.float32)


def spindle(fs: float, freq: float, duration_s: float, amp: float) -> np.ndarray:
    """A sleep spindle: ``freq`` Hz sinusoid under a smooth waxing-waning window."""
    t = np.arange(int(duration_s * fs)) / fs
    return (amp * np.sin(2 * np.pi * freq * t) * np.hanning(t.size) ** 0.8).astype(np.float32)


def k_complex(fs: float, amp_pp: float) -> np.ndarray:
    """A K complex: a sharp negative (downward) wave followed by a slower positive one, ~0.8-1 s."""
    t = np.arange(int(1.2 * fs)) / fs
    neg = -np.exp(-0.5 * ((t - 0.25) / 0.07) ** 2)
    pos = 0.55 * np.exp(-0.5 * ((t - 0.62) / 0.16) ** 2)
    wave = neg + pos
    wave /= wave.max() - wave.min()
    return (amp_pp * wave).astype(np.float32)


def vertex_wave(fs: float, amp: float) -> np.ndarray:
    """A vertex sharp wave: sharply contoured, < 0.5 s, centrally maximal."""
    t = np.arange(int(0.4 * fs)) / fs
    return (-amp * np.exp(-0.5 * ((t - 0.15) / 0.045) ** 2)).astype(np.float32)


def sawtooth_train(fs: float, freq: float, duration_s: float, amp: float) -> np.ndarray:
    """Sawtooth waves of REM sleep: a train of triangular 2-6 Hz waves."""
    t = np.arange(int(duration_s * fs)) / fs
    return (amp * signal.sawtooth(2 * np.pi * freq * t, width=0.8) * np.hanning(t.size) ** 0.3
            ).astype(np.float32)


def eye_movement(fs: float, amp: float, rise_s: float, hold_s: float) -> np.ndarray:
    """One conjugate eye movement seen on one EOG lead: a deflection that rises over ``rise_s``
    (REMs < 0.5 s, sharply peaked; SEMs > 0.5 s, sinusoidal) and returns after ``hold_s``."""
    n_rise = max(2, int(rise_s * fs))
    n_hold = max(1, int(hold_s * fs))
    rise = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n_rise))
    fall = rise[::-1]
    return (amp * np.concatenate([rise, np.ones(n_hold), fall])).astype(np.float32)


def blink(fs: float, amp: float) -> np.ndarray:
    """An eye blink: a brisk ~0.3 s monophasic deflection."""
    t = np.arange(int(0.45 * fs)) / fs
    return (amp * np.exp(-0.5 * ((t - 0.18) / 0.06) ** 2)).astype(np.float32)


def ecg_artifact(n: int, fs: float, rate_bpm: float, amp: float, rng: np.random.Generator) -> np.ndarray:
    """QRS-like spikes at a slightly variable heart rate (ECG contamination of EEG/EMG)."""
    out = np.zeros(n, dtype=np.float32)
    qrs = np.diff(np.exp(-0.5 * ((np.arange(int(0.12 * fs)) / fs - 0.05) / 0.012) ** 2), prepend=0.0)
    qrs = (amp * qrs / (np.abs(qrs).max() + 1e-12)).astype(np.float32)
    t = rng.uniform(0, 1)
    while True:
        i = int(t * fs)
        if i + qrs.size >= n:
            break
        out[i:i + qrs.size] += qrs
        t += 60.0 / rate_bpm * rng.uniform(0.93, 1.07)
    return out


def electrode_pop(fs: float, amp: float) -> np.ndarray:
    """An electrode pop: an abrupt step that decays back over about a second."""
    t = np.arange(int(1.5 * fs)) / fs
    return (amp * np.exp(-t / 0.35)).astype(np.float32)


def add_at(x: np.ndarray, start: int, wave: np.ndarray) -> None:
    """Add ``wave`` into ``x`` at sample ``start`` (clipped at the array ends)."""
    if start >= x.size or start + wave.size <= 0:
        return
    a = max(0, start)
    b = min(x.size, start + wave.size)
    x[a:b] += wave[a - start:b - start]
