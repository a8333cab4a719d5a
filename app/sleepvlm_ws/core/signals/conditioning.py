"""Signal conditioning for the SleepVLM image: the filters the model saw in training.

The training renderer band-passed and notched each channel over the WHOLE night, then
resampled it to 100 Hz by linear interpolation:

- EEG and EOG: 4th-order Butterworth band-pass 0.3-35 Hz; chin EMG: 10-100 Hz. Edges are
  normalised by Nyquist and clamped to [1e-3, 0.999] (so the EMG upper edge becomes
  0.999 x Nyquist at 200 Hz and below). Transfer-function (b, a) form, ``filtfilt``.
- Then a 50 Hz IIR notch, Q = 20, ``filtfilt``; skipped when 50 Hz is not below Nyquist.
- Then linear interpolation to 100 Hz, no anti-alias step, over the whole recording at once:
  its N samples become M = round(N x 100 / fs), output sample j taken at input sample
  j x (N - 1) / (M - 1), so the first and last samples of the night line up and the grid is
  stretched by (N - 1) / (M - 1) against fs / 100. At 200 Hz that puts the samples of the
  night's last epoch one input sample (5 ms) late, at 256 Hz 6 ms; not a visible shift, but it
  changes the fine texture of a dense trace (chin EMG) enough to lower the SSIM against the
  authors' images to about 0.96 there. A rate within 0.1 Hz of 100 Hz was used as it was.
  ``authors_grid`` gives that grid for an epoch when the caller knows the recording's
  length; without it, output sample j is at exactly j / 100 s.

The workstation filters a window instead: the epoch plus ``PAD_S`` seconds either side.
With 15 s of context the epoch differs from whole-night filtering by about 0.001 uV for
EEG/EOG at 100-256 Hz (0.01 uV at 512 Hz, the rounding floor of the (b, a) form itself) and
at most 0.1 uV for chin EMG sampled at 100 Hz, whose upper edge at 0.999 x Nyquist rings
longest; one image pixel is 2.7 uV. ``benchmarks/bench_render.py`` measures it.

Gaps (NaN samples of discontinuous recordings) are bridged by a straight line between the
valid samples on either side before filtering, so that neither the gap nor the amplifier's
DC offset puts a step into the filters; the gap stays NaN in the output (drawn as nothing).

Speed (``condition_rows``, the renderer's path): the filters run in scipy's (b, a) ``lfilter``
with filtfilt's own edge handling (odd extension, ``lfilter_zi`` states), so the result is
filtfilt's to the last bits, but only what the epoch's 3000 samples depend on is computed:
each backward pass stops at the first sample used, and a stage whose impulse response dies
out (below 1e-13 of its peak) within the context -- the notch after about 3 s, the chin
band-pass at 256 Hz and above after about 1.2 s -- filters only the stretch it needs around
the epoch (a difference from filtering the whole window below 1e-9 uV). Rows of one kind and
rate are filtered together, and large work arrays are reused per thread.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import signal

from ..base.stages import EPOCH_SECONDS

TARGET_FS = 100.0                                  # Hz after resampling
EPOCH_SAMPLES = int(round(EPOCH_SECONDS * TARGET_FS))  # 3000 samples per drawn epoch
PAD_S = 15.0                                       # seconds of context each side of the epoch

BANDS_HZ = {"eeg": (0.3, 35.0), "eog": (0.3, 35.0), "emg": (10.0, 100.0)}
BANDPASS_ORDER = 4
NOTCH_HZ = 50.0
NOTCH_Q = 20.0

__all__ = [
    "TARGET_FS", "EPOCH_SAMPLES", "PAD_S", "BANDS_HZ",
    "Grid", "authors_grid", "condition", "condition_rows", "filter_signal", "resample_linear",
]


_SETTLE_TOLERANCE = 1e-13    # impulse response relative to its peak at which a stage has settled
_SETTLE_LIMIT_S = 60.0       # a stage ringing longer than this is never cut short
_SETTLE_LIMIT_SAMPLES = 2_000_000


class _FilterStage(NamedTuple):
    """One zero-phase filter of the cascade, in the (b, a) form used in training."""

    b: np.ndarray
    a: np.ndarray
    zi: np.ndarray        # lfilter_zi(b, a) as a (1, order) row: filtfilt's initial state per unit
    edge: int             # filtfilt's default odd-extension length, 3 * max(len(a), len(b))
    settle: int | None    # samples after which the filter has forgotten its start (None: longer
                          # than any window), so a span needs only this much context either side


def _stage(ba: tuple[np.ndarray, np.ndarray], fs: float) -> _FilterStage:
    b, a = ba
    zi = signal.lfilter_zi(b, a)
    # the impulse response's tail: below 1e-13 of its peak the start no longer shows
    limit = max(min(int(_SETTLE_LIMIT_S * fs), _SETTLE_LIMIT_SAMPLES), 16)
    impulse = np.zeros(limit)
    impulse[0] = 1.0
    response = np.abs(signal.lfilter(b, a, impulse))
    loud = np.flatnonzero(response > _SETTLE_TOLERANCE * response.max())
    last = int(loud[-1]) if loud.size else 0
    settle = None if last > 0.9 * limit else last + max(len(a), len(b))
    return _FilterStage(b, a, zi.reshape(1, -1), 3 * max(len(a), len(b)), settle)


@lru_cache(maxsize=64)
def _filters(fs: float, kind: str) -> tuple[_FilterStage, ...]:
    """The cascade for this rate and signal kind: band-pass, then notch (each if it applies)."""
    try:
        low_hz, high_hz = BANDS_HZ[kind]
    except KeyError:
        raise ValueError(f"unknown signal kind {kind!r}; expected one of {sorted(BANDS_HZ)}") from None
    nyquist = fs / 2.0
    low = max(low_hz / nyquist, 1e-3)
    high = min(high_hz / nyquist, 0.999)
    stages = []
    if low < high:
        stages.append(_stage(signal.butter(BANDPASS_ORDER, [low, high], btype="bandpass"), fs))
    if NOTCH_HZ < nyquist:
        stages.append(_stage(signal.iirnotch(NOTCH_HZ, NOTCH_Q, fs), fs))
    return tuple(stages)


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


def _filtfilt_span(stage: _FilterStage, x: np.ndarray, first: int, stop: int) -> np.ndarray:
    """``scipy.signal.filtfilt(b, a, x, axis=-1)[:, first:stop]`` for 2-D x, the same arithmetic
    (odd extension, lfilter_zi initial states), but the backward pass stops at ``first``."""
    b, a, zi, edge, _ = stage
    n = x.shape[-1]
    ext = _work_array("extended", (x.shape[0], n + 2 * edge))
    ext[:, edge:edge + n] = x
    np.subtract(2 * x[:, :1], x[:, edge:0:-1], out=ext[:, :edge])
    np.subtract(2 * x[:, -1:], x[:, -2:-(edge + 2):-1], out=ext[:, edge + n:])
    forward, _ = signal.lfilter(b, a, ext, axis=-1, zi=zi * ext[:, :1])
    tail = forward[:, :first + edge - 1:-1]          # from the end back to sample ``first``
    backward, _ = signal.lfilter(b, a, tail, axis=-1, zi=zi * tail[:, :1])
    return backward[:, ::-1][:, :stop - first]


class _ScratchArrays(threading.local):
    """Per-thread work arrays, reused from call to call (fresh large arrays cost page faults)."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}


_WORK = _ScratchArrays()


def _work_array(name: str, shape: tuple[int, int]) -> np.ndarray:
    """This thread's float64 work array ``name``, of ``shape`` (contents undefined). A later
    request for the same name reuses it: use it only within one call."""
    size = shape[0] * shape[1]
    buffer = _WORK.arrays.get(name)
    if buffer is None or buffer.size < size:
        buffer = _WORK.arrays[name] = np.empty(max(size, 1), dtype=np.float64)
    return buffer[:size].reshape(shape)


def _filter_span(x: np.ndarray, stages: tuple[_FilterStage, ...], first: int, stop: int) -> np.ndarray:
    """The cascade's output over samples ``first:stop`` of 2-D x, as if each stage had filtered
    the whole of x: a stage that settles within the context gets only the context it needs."""
    n = x.shape[-1]
    spans = []                                       # per stage: (input span, output span)
    need = (first, stop)
    for stage in reversed(stages):
        lo, hi = 0, n
        if stage.settle is not None:
            lo, hi = max(0, need[0] - stage.settle), min(n, need[1] + stage.settle)
            if hi - lo <= stage.edge:
                lo, hi = 0, n
        spans.append(((lo, hi), need))
        need = (lo, hi)
    y = x[:, need[0]:need[1]]
    for stage, ((lo, hi), (out_lo, out_hi)) in zip(stages, reversed(spans)):
        y = _filtfilt_span(stage, y, out_lo - lo, out_hi - lo)
    return y


def _filter_rows(x: np.ndarray, fs: float, kind: str, first: int, stop: int) -> np.ndarray:
    """Band-pass + notch of 2-D x (rows of one kind and rate), samples ``first:stop`` of the
    output; float64, NaN where x was not finite (gaps). x may be a work array."""
    stages = _filters(fs, kind)
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    if stages and n <= max(stage.edge for stage in stages):   # too short for filtfilt's padding
        return np.full((x.shape[0], stop - first), np.nan)
    # a finite sum is the cheap proof that no sample is NaN or infinite
    all_valid = bool(np.isfinite(x.sum()))
    valid = None
    if not all_valid:
        valid = np.isfinite(x)
        all_valid = bool(valid.all())
    if not stages:
        y = x[:, first:stop].copy()
    else:
        if not all_valid:
            x = np.vstack([_bridge_gaps(row, ok) for row, ok in zip(x, valid)])
        y = _filter_span(x, stages, first, stop)
    if not all_valid:
        y[~valid[:, first:stop]] = np.nan
    return y


def filter_signal(x: np.ndarray, fs: float, kind: str) -> np.ndarray:
    """Zero-phase band-pass + notch at the native rate. float64 copy; NaN where x was not finite.

    ``x`` is one signal (1-D) or several of the same kind and rate, one per row (2-D: filtered
    in one pass, each row as if alone). A signal too short for the filters' edge padding comes
    back all NaN (nothing to draw). The input is not modified.
    """
    fs = _check_rate(fs)
    _filters(fs, kind)                               # validates the kind
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(f"expected a 1-D signal or 2-D rows of signals, got shape {x.shape}")
    rows = np.atleast_2d(x)
    return _filter_rows(rows, fs, kind, 0, rows.shape[-1]).reshape(x.shape)


class _Taps(NamedTuple):
    """Linear interpolation of ``n`` samples at 100 Hz out of ``size`` samples at ``fs``."""

    first: int            # the samples used are first .. stop - 1
    stop: int
    left: np.ndarray      # left neighbour of each output sample, relative to ``first``
    frac: np.ndarray      # weight of the right neighbour
    on_left: np.ndarray   # exact hits (kept valid even when the other neighbour is NaN)
    on_right: np.ndarray
    outside: np.ndarray | None   # output samples beyond the signal (NaN); None if none


class Grid(NamedTuple):
    """Where the 100-Hz samples fall in a window: output sample i is at fractional input index
    ``first + i * step`` of the window's samples."""

    first: float
    step: float


def authors_grid(fs: float, recording_samples: int, epoch_start_s: float, window_first_sample: int) -> Grid:
    """The training resampler's grid for one epoch: the whole recording's ``recording_samples``
    samples at ``fs`` interpolated to round(N x 100 / fs) samples spanning the same first and
    last sample; the epoch's first output sample is number round(epoch_start_s x 100) of those;
    the window handed to the renderer starts at recording sample ``window_first_sample``."""
    fs = _check_rate(fs)
    n_in = int(recording_samples)
    first_out = int(round(float(epoch_start_s) * TARGET_FS))
    if abs(fs - TARGET_FS) < 0.1:                   # used as it was, sample for sample
        return Grid(float(first_out - int(window_first_sample)), 1.0)
    n_out = int(round(TARGET_FS / fs * n_in))
    if n_in < 2 or n_out < 2:
        raise ValueError(f"a recording of {n_in} samples at {fs:g} Hz is too short to resample")
    step = (n_in - 1) / (n_out - 1)
    return Grid(first_out * step - int(window_first_sample), step)


def _taps(fs: float, start_s: float, size: int, n: int, grid: Grid | None = None) -> _Taps:
    """The taps, cached for the plain grid (the same few window shapes over and over); an
    authors' grid differs from epoch to epoch and is not kept."""
    return _grid_taps(fs, start_s, size, n, None) if grid is None else _grid_taps.__wrapped__(fs, start_s, size, n, grid)


@lru_cache(maxsize=64)
def _grid_taps(fs: float, start_s: float, size: int, n: int, grid: Grid | None) -> _Taps:
    if grid is None:
        pos = (start_s + np.arange(n) / TARGET_FS) * fs     # fractional index into y
    else:
        pos = grid.first + np.arange(n) * grid.step
    inside = (pos >= -1e-9) & (pos <= size - 1 + 1e-9)
    pos = np.clip(pos, 0.0, size - 1)
    left = np.minimum(np.floor(pos).astype(np.int64), max(size - 2, 0))
    frac = pos - left
    first = int(left.min())
    stop = int(min(left.max() + 1, size - 1)) + 1
    return _Taps(first, stop, left - first, frac, frac <= 1e-9, frac >= 1.0 - 1e-9,
                 None if inside.all() else ~inside)


def _interpolate(y: np.ndarray, taps: _Taps) -> np.ndarray:
    """Rows of y (samples ``taps.first:taps.stop``) linearly interpolated at the taps."""
    last = y.shape[-1] - 1
    y_left = y[:, taps.left]
    y_right = y[:, np.minimum(taps.left + 1, last)]
    out = y_right - y_left
    out *= taps.frac
    out += y_left
    out = np.where(taps.on_left, y_left, np.where(taps.on_right, y_right, out))
    if taps.outside is not None:
        out[:, taps.outside] = np.nan
    return out


def resample_linear(y: np.ndarray, fs: float, start_s: float, n: int) -> np.ndarray:
    """``n`` samples at 100 Hz from ``start_s`` seconds after y's first sample, by linear
    interpolation. NaN where the time falls outside y or next to a NaN sample of y."""
    fs = _check_rate(fs)
    if y.size == 0:
        return np.full(n, np.nan)
    taps = _taps(fs, float(start_s), int(y.size), int(n))
    return _interpolate(np.asarray(y, dtype=np.float64)[None, taps.first:taps.stop], taps)[0]


def condition_rows(x, fs: float, kind: str, start_s: float, n: int, grid: Grid | None = None) -> np.ndarray:
    """``resample_linear(filter_signal(row, fs, kind), fs, start_s, n)`` for each row of x
    (signals of one kind, rate and length: a 2-D array or a sequence of 1-D arrays), computing
    only what those ``n`` samples depend on: the filters' backward passes stop at the first
    sample used, and a stage that settles within the context (the notch; the chin band-pass
    at 256 Hz and above) filters only the stretch it needs (a difference below 1e-9 uV).
    With ``grid`` (``authors_grid``) the samples are taken on that grid instead of every
    1/100 s from ``start_s``. The input is not modified."""
    fs = _check_rate(fs)
    _filters(fs, kind)                               # validates the kind
    rows = [np.asarray(row) for row in x]
    if not rows or any(row.ndim != 1 or row.size != rows[0].size for row in rows):
        raise ValueError("expected rows of signals of one length")
    size = rows[0].size
    if size == 0:
        return np.full((len(rows), n), np.nan)
    block = _work_array("block", (len(rows), size))  # float64 copy, filled row by row
    for target, row in zip(block, rows):
        target[:] = row
    taps = _taps(fs, float(start_s), int(size), int(n), grid)
    return _interpolate(_filter_rows(block, fs, kind, taps.first, taps.stop), taps)


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
