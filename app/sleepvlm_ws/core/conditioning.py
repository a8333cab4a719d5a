"""Signal conditioning for the SleepVLM image: the filters the model saw in training.

The training renderer band-passed and notched each channel over the WHOLE night, then
resampled it to 100 Hz by linear interpolation:

- EEG and EOG: 4th-order Butterworth band-pass 0.3-35 Hz; chin EMG: 10-100 Hz. Edges are
  normalised by Nyquist and clamped to [1e-3, 0.999] (so the EMG upper edge becomes
  0.999 x Nyquist at 200 Hz and below). Transfer-function (b, a) form, ``filtfilt``.
- Then a 50 Hz IIR notch, Q = 20, ``filtfilt``; skipped when 50 Hz is not below Nyquist.
- Then linear interpolation to 100 Hz, no anti-alias step.

The workstation filters a window instead: the epoch plus ``PAD_S`` seconds either side.
With 15 s of context the epoch differs from whole-night filtering by about 0.001 uV for
EEG/EOG at 100-256 Hz (0.01 uV at 512 Hz, the rounding floor of the (b, a) form itself) and
at most 0.1 uV for chin EMG sampled at 100 Hz, whose upper edge at 0.999 x Nyquist rings
longest; one image pixel is 2.7 uV. ``benchmarks/bench_render.py`` measures it.

Gaps (NaN samples of discontinuous recordings) are bridged by a straight line between the
valid samples on either side before filtering, so that neither the gap nor the amplifier's
DC offset puts a step into the filters; the gap stays NaN in the output (drawn as nothing).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

from .stages import EPOCH_SECONDS

TARGET_FS = 100.0                                  # Hz after resampling
EPOCH_SAMPLES = int(round(EPOCH_SECONDS * TARGET_FS))  # 3000 samples per drawn epoch
PAD_S = 15.0                                       # seconds of context each side of the epoch

BANDS_HZ = {"eeg": (0.3, 35.0), "eog": (0.3, 35.0), "emg": (10.0, 100.0)}
BANDPASS_ORDER = 4
NOTCH_HZ = 50.0
NOTCH_Q = 20.0

__all__ = [
    "TARGET_FS", "EPOCH_SAMPLES", "PAD_S", "BANDS_HZ",
    "condition", "filter_signal", "resample_linear",
]


@lru_cache(maxsize=64)
def _filters(fs: float, kind: str) -> tuple[tuple[np.ndarray, np.ndarray] | None, ...]:
    """(band-pass (b, a) or None, notch (b, a) or None) for this rate and signal kind."""
    try:
        low_hz, high_hz = BANDS_HZ[kind]
    except KeyError:
        raise ValueError(f"unknown signal kind {kind!r}; expected one of {sorted(BANDS_HZ)}") from None
    nyquist = fs / 2.0
    low = max(low_hz / nyquist, 1e-3)
    high = min(high_hz / nyquist, 0.999)
    bandpass = signal.butter(BANDPASS_ORDER, [low, high], btype="bandpass") if low < high else None
    notch = signal.iirnotch(NOTCH_HZ, NOTCH_Q, fs) if NOTCH_HZ < nyquist else None
    return bandpass, notch


def _check_rate(fs: float) -> float:
    fs = float(fs)
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"sampling rate must be a positive number of Hz, got {fs!r}")
    return fs


def _bridge_gaps(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Copy of x with invalid samples replaced by a straight line between valid neighbours."""
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return np.zeros(x.shape, dtype=np.float64)
    return np.interp(np.arange(x.size), idx, x[idx])


def filter_signal(x: np.ndarray, fs: float, kind: str) -> np.ndarray:
    """Zero-phase band-pass + notch at the native rate. float64 copy; NaN where x was not finite.

    ``x`` is one signal (1-D) or several of the same kind and rate, one per row (2-D: filtered
    in one pass, each row as if alone). A signal too short for the filters' edge padding comes
    back all NaN (nothing to draw). The input is not modified.
    """
    fs = _check_rate(fs)
    bandpass, notch = _filters(fs, kind)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(f"expected a 1-D signal or 2-D rows of signals, got shape {x.shape}")
    valid = np.isfinite(x)
    all_valid = bool(valid.all())
    if all_valid:
        y = x.copy()
    else:
        rows = np.atleast_2d(x)
        bridged = [_bridge_gaps(row, ok) for row, ok in zip(rows, np.atleast_2d(valid))]
        y = np.vstack(bridged).reshape(x.shape)
    for ba in (bandpass, notch):
        if ba is None:
            continue
        b, a = ba
        if x.shape[-1] <= 3 * max(len(a), len(b)):   # filtfilt's default edge padding
            return np.full(x.shape, np.nan)
        y = signal.filtfilt(b, a, y, axis=-1)
    if not all_valid:
        y[~valid] = np.nan
    return y


def resample_linear(y: np.ndarray, fs: float, start_s: float, n: int) -> np.ndarray:
    """``n`` samples at 100 Hz from ``start_s`` seconds after y's first sample, by linear
    interpolation. NaN where the time falls outside y or next to a NaN sample of y."""
    fs = _check_rate(fs)
    pos = (start_s + np.arange(n) / TARGET_FS) * fs     # fractional index into y
    size = y.size
    if size == 0:
        return np.full(n, np.nan)
    inside = (pos >= -1e-9) & (pos <= size - 1 + 1e-9)
    pos = np.clip(pos, 0.0, size - 1)
    left = np.minimum(np.floor(pos).astype(np.int64), max(size - 2, 0))
    right = np.minimum(left + 1, size - 1)
    frac = pos - left
    y_left = y[left]
    y_right = y[right]
    out = y_left + frac * (y_right - y_left)
    # exact hits on a valid sample stay valid even when the other neighbour is NaN
    on_left = frac <= 1e-9
    on_right = frac >= 1.0 - 1e-9
    out = np.where(on_left, y_left, np.where(on_right, y_right, out))
    out[~inside] = np.nan
    return out


def condition(x: np.ndarray, fs: float, kind: str) -> np.ndarray:
    """Band-pass + notch (zero phase) as in training, then linear resampling to 100 Hz.

    ``kind`` is "eeg", "eog" or "emg"; x is in microvolts at ``fs`` Hz. Output sample j is
    at time j / 100 s from x's first sample and covers x's duration; NaN in x (gaps) stays
    NaN in the output. The input array is not modified.
    """
    fs = _check_rate(fs)
    y = filter_signal(x, fs, kind)
    if y.size == 0:
        return np.empty(0)
    n_out = int(np.floor((y.size - 1) / fs * TARGET_FS + 1e-9)) + 1
    return resample_linear(y, fs, 0.0, n_out)
