"""Display filters for the waveform view: high-pass, low-pass and mains notch.

These only change what the technologist *sees*; they are applied zero-phase
(``scipy.signal.sosfiltfilt``) to the short window the view fetches, never to the
recording. Qt-free so they can be tested and benchmarked on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import signal

from .montage import EEG_ROLES, EMG_ROLES, EOG_ROLES

#: Seconds fetched on each side of the shown window so filter edge effects fall outside it.
FILTER_PAD_S = 8.0
#: Choices offered in menus (None = off).
HIGHPASS_CHOICES: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 1.0, 10.0)
LOWPASS_CHOICES: tuple[float | None, ...] = (None, 15.0, 35.0, 70.0, 100.0)
NOTCH_CHOICES: tuple[float | None, ...] = (None, 50.0, 60.0)
NOTCH_Q = 20.0
_ORDER = 4


@dataclass(frozen=True)
class DisplayFilter:
    """Cut-offs in Hz; ``None`` switches that stage off."""

    highpass_hz: float | None = None
    lowpass_hz: float | None = None
    notch_hz: float | None = None

    @property
    def is_active(self) -> bool:
        return any(v is not None for v in (self.highpass_hz, self.lowpass_hz, self.notch_hz))

    def describe(self) -> str:
        """Short text for row labels, e.g. ``"0.3–35 Hz, notch 50"`` or ``"raw"``."""
        hp, lp = self.highpass_hz, self.lowpass_hz
        parts = []
        if hp is not None and lp is not None:
            parts.append(f"{hp:g}–{lp:g} Hz")
        elif hp is not None:
            parts.append(f"HP {hp:g} Hz")
        elif lp is not None:
            parts.append(f"LP {lp:g} Hz")
        if self.notch_hz is not None:
            parts.append(f"notch {self.notch_hz:g}")
        return ", ".join(parts) if parts else "raw"

    def with_notch(self, notch_hz: float | None) -> "DisplayFilter":
        """A copy with another mains notch; high- and low-pass stay.

        Parameters
        ----------
        notch_hz : float or None
            The notch frequency in Hz (50 or 60); None switches the notch off.

        Returns
        -------
        DisplayFilter
        """
        return DisplayFilter(self.highpass_hz, self.lowpass_hz, notch_hz)


RAW = DisplayFilter()


def signal_kind(role: str) -> str:
    """The kind of signal a montage role carries (it picks the role's standard display filter).

    Parameters
    ----------
    role : str
        A montage role (``"F4-M1"``, ``"LOC"``, ``"CHIN"``, ...) or any other row label.

    Returns
    -------
    str
        ``"eeg"`` for F4-M1, C4-M1 and O2-M1, ``"eog"`` for LOC and ROC, ``"emg"`` for CHIN,
        ``"other"`` for anything else.
    """
    if role in EEG_ROLES:
        return "eeg"
    if role in EOG_ROLES:
        return "eog"
    if role in EMG_ROLES:
        return "emg"
    return "other"


def standard_filter(kind: str, notch_hz: float | None = None) -> DisplayFilter:
    """The usual PSG review settings (and what the model sees): EEG/EOG 0.3–35 Hz, chin 10–100 Hz.

    Parameters
    ----------
    kind : str
        ``"eeg"``, ``"eog"`` or ``"emg"`` (see :func:`signal_kind`); any other kind gets neither
        high- nor low-pass.
    notch_hz : float, optional
        The mains notch in Hz (50 or 60); None for none.

    Returns
    -------
    DisplayFilter
    """
    if kind in ("eeg", "eog"):
        return DisplayFilter(0.3, 35.0, notch_hz)
    if kind == "emg":
        return DisplayFilter(10.0, 100.0, notch_hz)
    return DisplayFilter(None, None, notch_hz)


@lru_cache(maxsize=64)
def filter_sos(fs: float, flt: DisplayFilter) -> np.ndarray | None:
    """Second-order sections for ``flt`` at ``fs``; stages at or above Nyquist are skipped."""
    nyquist = fs / 2.0
    hp = flt.highpass_hz if flt.highpass_hz and 0 < flt.highpass_hz < nyquist else None
    lp = flt.lowpass_hz if flt.lowpass_hz and 0 < flt.lowpass_hz < 0.99 * nyquist else None
    if hp is not None and lp is not None and hp >= lp:
        lp = None
    sections: list[np.ndarray] = []
    if hp is not None and lp is not None:
        sections.append(signal.butter(_ORDER, [hp, lp], btype="bandpass", fs=fs, output="sos"))
    elif hp is not None:
        sections.append(signal.butter(_ORDER, hp, btype="highpass", fs=fs, output="sos"))
    elif lp is not None:
        sections.append(signal.butter(_ORDER, lp, btype="lowpass", fs=fs, output="sos"))
    if flt.notch_hz and 0 < flt.notch_hz < 0.99 * nyquist:
        b, a = signal.iirnotch(flt.notch_hz, NOTCH_Q, fs=fs)
        sections.append(signal.tf2sos(b, a))
    if not sections:
        return None
    return np.vstack(sections)


def apply_display_filter(samples: np.ndarray, fs: float, flt: DisplayFilter) -> np.ndarray:
    """Zero-phase filter ``samples`` for display; NaN gaps are bridged for filtering and kept as NaN.

    The window's mean is taken out before filtering (a large electrode offset would otherwise ring
    through a high-pass) and restored as far as the filter passes DC. A high-pass at or above the
    Nyquist frequency, a low-pass or notch at or above 0.99 of it, and a low-pass at or below the
    high-pass are left out.

    Parameters
    ----------
    samples : numpy.ndarray
        1-D samples in microvolts; fetch ``FILTER_PAD_S`` seconds more on each side of the shown
        window so edge effects fall outside it.
    fs : float
        The sampling rate in Hz.
    flt : DisplayFilter
        The cut-offs to apply.

    Returns
    -------
    numpy.ndarray
        float32, as long as ``samples``. With no stage to apply, fewer than 2 samples or nothing
        but NaN, the samples come back unchanged (as float32).
    """
    x = np.asarray(samples, dtype=np.float64)
    sos = filter_sos(float(fs), flt)
    if sos is None or x.size < 2:
        return np.asarray(samples, dtype=np.float32)
    gaps = np.isnan(x)
    if gaps.all():
        return x.astype(np.float32)
    if gaps.any():
        idx = np.arange(x.size)
        x = x.copy()
        x[gaps] = np.interp(idx[gaps], idx[~gaps], x[~gaps])
    n_trivial = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    padlen = min(max(3 * (2 * len(sos) + 1 - n_trivial), int(fs)), x.size - 1)
    # Filter around the window mean (a large electrode offset would otherwise ring through a
    # high-pass for seconds), then restore the mean as far as the filter passes DC.
    mean = float(np.mean(x))
    dc_gain = float(np.prod(np.sum(sos[:, :3], axis=1) / np.sum(sos[:, 3:], axis=1)))
    y = signal.sosfiltfilt(sos, x - mean, padlen=padlen) + mean * dc_gain ** 2
    if gaps.any():
        y[gaps] = np.nan
    return y.astype(np.float32)
