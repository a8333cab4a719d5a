"""Whole-night waveform detectors: each runs once over a role's signal and returns events in
seconds from the start of the recording (epoch binning is done in ``measures``).

Thresholds are stated as the module constants below, in the units a technologist uses (uV,
Hz, s). NaN gaps are treated as flat zero signal; ``coverage`` tells which seconds were real.
"""

from __future__ import annotations

import numpy as np
from scipy import signal
from scipy.ndimage import uniform_filter1d

BANDS = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0)}

SPINDLE_BAND = (11.0, 16.0)
SPINDLE_HIGH = 3.0        # x the night's median sigma envelope: the burst's core
SPINDLE_LOW = 1.5         # x median: where the burst's edges are measured
SPINDLE_MIN_UV = 3.0      # the core must also exceed this sigma RMS
SPINDLE_MIN_PTP_UV = 15.0  # sigma-band peak-to-peak of the burst
SPINDLE_REL = 0.25        # sigma power share of 4.5-30 Hz power at the core
SPINDLE_DURATION = (0.5, 3.0)
SPINDLE_ALPHA_CONTEXT = 0.25  # reject bursts with alpha dominant in > 25% of the 6 s around them
SLOW_WAVE_PTP_UV = 75.0
SLOW_WAVE_PERIOD = (0.4, 2.5)   # s, full wave (0.5-2 Hz with slack for the filter)
K_ISOLATION_S = 3.0       # a K complex has no other slow wave within this many seconds
REM_STEP_UV = 40.0        # LOC-ROC change within 0.2 s
SEM_STEP_UV = 35.0        # LOC-ROC change within 1 s, without a rapid component
BLINK_UV = 60.0           # in-phase EOG deflection
ARTEFACT_PTP_UV = 500.0   # peak-to-peak within one second
ARTEFACT_HF_UV = 20.0     # RMS above 20 Hz within one second (movement / muscle)


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        x = x.copy()
        x[bad] = 0.0
    return x


def bandpass(x: np.ndarray, fs: float, lo: float | None, hi: float | None, order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth filter; ``lo`` None: low-pass, ``hi`` None (or above 0.45 fs): high-pass."""
    if hi is not None and hi >= 0.45 * fs:
        hi = None
    if lo is None and hi is None:
        return x
    if lo is None:
        sos = signal.butter(order, hi, btype="lowpass", fs=fs, output="sos")
    elif hi is None:
        sos = signal.butter(order, lo, btype="highpass", fs=fs, output="sos")
    else:
        sos = signal.butter(order, [lo, hi], btype="bandpass", fs=fs, output="sos")
    if x.size <= 3 * (2 * order + 1) * 2:
        return np.zeros_like(x)
    return signal.sosfiltfilt(sos, x)


def coverage_seconds(x: np.ndarray, fs: float, n_seconds: int) -> np.ndarray:
    """Per second: True where the role has real (finite, not flat) samples."""
    w = max(1, int(round(fs)))
    out = np.zeros(n_seconds, dtype=bool)
    m = min(n_seconds, x.size // w)
    if m:
        seg = np.asarray(x[: m * w], dtype=np.float64).reshape(m, w)
        finite = np.isfinite(seg).all(axis=1)
        filled = np.nan_to_num(seg, nan=0.0, posinf=0.0, neginf=0.0)
        span = filled.max(axis=1) - filled.min(axis=1)
        out[:m] = finite & (span > 0.0)
    return out


def _seconds_view(x: np.ndarray, fs: float, n_seconds: int) -> np.ndarray:
    w = max(1, int(round(fs)))
    seg = np.zeros((n_seconds, w))
    m = min(n_seconds, x.size // w)
    seg[:m] = x[: m * w].reshape(m, w)
    return seg


def alpha_seconds(x: np.ndarray, fs: float, n_seconds: int) -> np.ndarray:
    """Per 1-s window: True where 8-13 Hz power density exceeds that of delta, theta and beta."""
    seg = signal.detrend(_seconds_view(_clean(x), fs, n_seconds), axis=1)
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.shape[1]), axis=1)) ** 2
    f = np.fft.rfftfreq(seg.shape[1], 1.0 / fs)
    dens = {}
    for name, (lo, hi) in (("delta", (1.0, 4.0)), ("theta", (4.0, 8.0)), ("alpha", (8.0, 13.0)),
                           ("beta", (13.0, 30.0))):
        sel = (f >= lo) & (f < hi) if name != "alpha" else (f >= lo) & (f <= hi)
        dens[name] = spec[:, sel].mean(axis=1) if sel.any() else np.zeros(n_seconds)
    others = np.maximum.reduce([dens["delta"], dens["theta"], dens["beta"]])
    return (dens["alpha"] > others) & (dens["alpha"] > 0)


def band_power_epochs(x: np.ndarray, fs: float, n_epochs: int, epoch_s: float = 30.0) -> np.ndarray:
    """(n_epochs, 4) band powers in dB re 1 uV^2 (delta, theta, alpha, beta), 2-s Hann segments."""
    seg_n = max(8, int(round(2 * fs)))
    per_epoch = int(epoch_s * fs) // seg_n
    total = n_epochs * per_epoch
    xs = _clean(x)
    buf = np.zeros(total * seg_n)
    m = min(xs.size // seg_n, total) * seg_n
    buf[:m] = xs[:m]
    seg = signal.detrend(buf.reshape(total, seg_n), axis=1)
    win = np.hanning(seg_n)
    spec = np.abs(np.fft.rfft(seg * win, axis=1)) ** 2 / (fs * (win ** 2).sum())
    spec[:, 1:] *= 2
    f = np.fft.rfftfreq(seg_n, 1.0 / fs)
    df = f[1] - f[0]
    out = np.zeros((n_epochs, 4))
    for k, (lo, hi) in enumerate(BANDS.values()):
        sel = (f >= lo) & (f < hi)
        p = spec[:, sel].sum(axis=1) * df
        out[:, k] = p.reshape(n_epochs, per_epoch).mean(axis=1) if per_epoch else 0.0
    return 10.0 * np.log10(np.maximum(out, 1e-6))


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.diff(np.concatenate([[0], mask.view(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def detect_spindles(x: np.ndarray, fs: float, alpha_mask: np.ndarray | None = None
                    ) -> list[tuple[float, float, float, float]]:
    """Sleep spindles as (onset_s, duration_s, frequency_hz, peak-to-peak uV).

    ``alpha_mask`` (per second, from :func:`alpha_seconds` on the same lead) rejects bursts
    inside an alpha train: alpha dominant in > 25% of the 3 s either side of the burst.
    """
    xs = _clean(x)
    if xs.size < 4 * fs or SPINDLE_BAND[1] >= 0.45 * fs:
        return []
    sig = bandpass(xs, fs, *SPINDLE_BAND, order=3)
    win = max(1, int(0.25 * fs))
    env = np.sqrt(np.maximum(uniform_filter1d(sig * sig, win), 0.0))
    broad = uniform_filter1d(bandpass(xs, fs, 4.5, 30.0, order=2) ** 2, win)
    med = float(np.median(env[env > 0])) if (env > 0).any() else 0.0
    if med <= 0:
        return []
    starts, stops = _runs(env > SPINDLE_LOW * med)
    out = []
    spec_n = int(4 * fs)
    f = np.fft.rfftfreq(spec_n, 1.0 / fs)
    fsel = (f >= 9.0) & (f <= 16.0)
    high = max(SPINDLE_HIGH * med, SPINDLE_MIN_UV)
    for a, b in zip(starts, stops):
        dur = (b - a) / fs
        if not SPINDLE_DURATION[0] <= dur <= SPINDLE_DURATION[1]:
            continue
        core = int(a + np.argmax(env[a:b]))
        if env[core] < high or env[core] ** 2 < SPINDLE_REL * broad[core]:
            continue
        if alpha_mask is not None and alpha_mask.size:
            around = np.r_[int(a / fs) - 3:int(a / fs), int(b / fs) + 1:int(b / fs) + 4]
            around = around[(around >= 0) & (around < alpha_mask.size)]
            if around.size and alpha_mask[around].mean() > SPINDLE_ALPHA_CONTEXT:
                continue
        seg = xs[a:b] - xs[a:b].mean()
        spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size), spec_n))
        freq = float(f[fsel][np.argmax(spec[fsel])])
        if freq < SPINDLE_BAND[0]:
            continue  # an alpha burst, not a spindle
        ptp = float(sig[a:b].max() - sig[a:b].min())
        if ptp < SPINDLE_MIN_PTP_UV:
            continue
        out.append((float(a / fs), float(dur), freq, ptp))
    return out


def detect_slow_waves(x: np.ndarray, fs: float) -> np.ndarray:
    """Slow waves (0.5-2 Hz, > 75 uV peak-to-peak) as rows (onset_s, duration_s, ptp_uv).

    Waves run from one negative-going zero crossing of the 0.5-2 Hz signal to the next;
    their peak-to-peak is measured on the 0.3-4 Hz signal over the same span.
    """
    xs = _clean(x)
    if xs.size < 10 * fs:
        return np.zeros((0, 3))
    lf = bandpass(xs, fs, 0.5, 2.0, order=2)
    wide = bandpass(xs, fs, 0.3, 4.0, order=2)
    zc = np.flatnonzero((lf[:-1] >= 0) & (lf[1:] < 0))
    if zc.size < 2:
        return np.zeros((0, 3))
    ptp = np.maximum.reduceat(wide, zc)[:-1] - np.minimum.reduceat(wide, zc)[:-1]
    dur = np.diff(zc) / fs
    keep = (ptp > SLOW_WAVE_PTP_UV) & (dur >= SLOW_WAVE_PERIOD[0]) & (dur <= SLOW_WAVE_PERIOD[1])
    return np.column_stack([zc[:-1][keep] / fs, dur[keep], ptp[keep]])


def k_complex_rows(waves: np.ndarray) -> np.ndarray:
    """The slow waves that stand alone (no other within ``K_ISOLATION_S``): K complexes."""
    if waves.shape[0] == 0:
        return waves
    on = waves[:, 0]
    end = on + waves[:, 1]
    gap_before = np.concatenate([[np.inf], on[1:] - end[:-1]])
    gap_after = np.concatenate([on[1:] - end[:-1], [np.inf]])
    return waves[(gap_before > K_ISOLATION_S) & (gap_after > K_ISOLATION_S)]


def _step(x: np.ndarray, fs: float, span_s: float) -> np.ndarray:
    k = max(1, int(round(span_s * fs / 2)))
    out = np.zeros_like(x)
    out[k:-k] = x[2 * k:] - x[: -2 * k]
    return out


def detect_eye_movements(loc: np.ndarray, roc: np.ndarray, fs: float
                         ) -> tuple[list[tuple[float, float]], list[float]]:
    """Conjugate (out-of-phase LOC/ROC) eye movements: REMs as (time_s, amplitude_uv) and SEM times.

    A REM changes LOC-ROC by > 40 uV within 0.2 s; a SEM by > 35 uV within 1 s with no REM
    within 1 s of it. Both leads must move, in opposite directions.
    """
    n = min(loc.size, roc.size)
    if n < 4 * fs:
        return [], []
    lf = bandpass(_clean(loc[:n]), fs, 0.3, 10.0)
    rf = bandpass(_clean(roc[:n]), fs, 0.3, 10.0)
    d = (lf - rf) / 2
    fast = _step(d, fs, 0.2)
    fl, fr = _step(lf, fs, 0.2), _step(rf, fs, 0.2)
    peaks, _ = signal.find_peaks(np.abs(fast), height=REM_STEP_UV, distance=max(1, int(0.3 * fs)))
    ok = (fl[peaks] * fr[peaks] < 0) & (np.minimum(np.abs(fl[peaks]), np.abs(fr[peaks])) > 0.25 * REM_STEP_UV)
    peaks = peaks[ok]
    half = int(0.4 * fs)
    rems = [(float(p / fs), float(d[max(0, p - half):p + half].max() - d[max(0, p - half):p + half].min()))
            for p in peaks]
    ds = bandpass(d, fs, None, 2.0)
    slow = _step(ds, fs, 1.0)
    sl, sr = _step(bandpass(lf, fs, None, 2.0), fs, 1.0), _step(bandpass(rf, fs, None, 2.0), fs, 1.0)
    cand, _ = signal.find_peaks(np.abs(slow), height=SEM_STEP_UV, distance=max(1, int(1.0 * fs)))
    cand = cand[(sl[cand] * sr[cand] < 0)]
    rem_t = np.array([r[0] for r in rems])
    sems = []
    for p in cand:
        t = p / fs
        if rem_t.size and np.min(np.abs(rem_t - t)) < 1.0:
            continue
        sems.append(float(t))
    return rems, sems


def detect_blinks(loc: np.ndarray, roc: np.ndarray, fs: float) -> list[float]:
    """Blinks: brisk (< 0.25 s wide at half height) in-phase deflections > 60 uV on both eye leads."""
    n = min(loc.size, roc.size)
    if n < 4 * fs:
        return []
    lf = bandpass(_clean(loc[:n]), fs, 1.0, 10.0)
    rf = bandpass(_clean(roc[:n]), fs, 1.0, 10.0)
    s = (lf + rf) / 2
    out = []
    for sign in (1.0, -1.0):
        peaks, _ = signal.find_peaks(sign * s, prominence=BLINK_UV, width=(0.04 * fs, 0.25 * fs),
                                     distance=max(1, int(0.3 * fs)))
        both = (sign * lf[peaks] > 0.3 * BLINK_UV) & (sign * rf[peaks] > 0.3 * BLINK_UV)
        out.extend((peaks[both] / fs).tolist())
    return sorted(out)


def artefact_seconds(x: np.ndarray, fs: float, n_seconds: int) -> np.ndarray:
    """Per second: True for high-amplitude (> 500 uV p-p) or broadband high-frequency activity."""
    xs = _clean(x)
    raw = _seconds_view(xs, fs, n_seconds)
    ptp = raw.max(axis=1) - raw.min(axis=1)
    hf = _seconds_view(bandpass(xs, fs, 20.0, None), fs, n_seconds) if 20.0 < 0.45 * fs else np.zeros_like(raw)
    rms_hf = np.sqrt((hf ** 2).mean(axis=1))
    return (ptp > ARTEFACT_PTP_UV) | (rms_hf > ARTEFACT_HF_UV)


def rms_epochs(x: np.ndarray, fs: float, n_epochs: int, lo: float = 10.0, epoch_s: float = 30.0) -> np.ndarray:
    """Per epoch RMS of the signal above ``lo`` Hz (chin EMG tone)."""
    xs = bandpass(_clean(x), fs, lo, None)
    spe = int(round(epoch_s * fs))
    buf = np.full(n_epochs * spe, np.nan)
    m = min(xs.size, buf.size)
    buf[:m] = xs[:m]
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.nanmean(buf.reshape(n_epochs, spe) ** 2, axis=1)) if n_epochs else np.zeros(0)
