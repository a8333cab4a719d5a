"""Display filters of the waveform view (Qt-free helper)."""

import numpy as np
import pytest

from sleepvlm_ws.core.signals.display_filters import (RAW, DisplayFilter, apply_display_filter, filter_sos,
                                                      signal_kind, standard_filter)

FS = 256.0


def tone(freq, amplitude, seconds=20.0, fs=FS):
    t = np.arange(int(seconds * fs)) / fs
    return amplitude * np.sin(2 * np.pi * freq * t)


def middle(x, fs=FS, trim_s=3.0):
    k = int(trim_s * fs)
    return x[k:-k]


def test_raw_is_unchanged_float32():
    x = tone(10, 40) + 100
    y = apply_display_filter(x, FS, RAW)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x.astype(np.float32))


def test_highpass_removes_offset_and_keeps_eeg_band():
    x = tone(10, 50) + 300.0
    y = apply_display_filter(x, FS, DisplayFilter(highpass_hz=0.3))
    # a 0.3-Hz high-pass settles within a few seconds of the window edges
    assert abs(float(np.mean(middle(y, trim_s=6)))) < 0.5
    np.testing.assert_allclose(middle(y, trim_s=6), middle(tone(10, 50), trim_s=6), atol=1.0)


def test_notch_removes_mains_but_not_signal():
    clean = tone(10, 50)
    y = apply_display_filter(clean + tone(50, 30), FS, DisplayFilter(notch_hz=50.0))
    np.testing.assert_allclose(middle(y), middle(clean), atol=1.0)
    # 60 Hz notch leaves 50 Hz mains in place
    y60 = apply_display_filter(clean + tone(50, 30), FS, DisplayFilter(notch_hz=60.0))
    assert np.max(np.abs(middle(y60) - middle(clean))) > 20


def test_lowpass_is_zero_phase():
    slow = tone(2, 60)
    y = apply_display_filter(slow + tone(70, 20), FS, DisplayFilter(lowpass_hz=35.0))
    np.testing.assert_allclose(middle(y), middle(slow), atol=1.5)  # no delay: zero phase


def test_gaps_stay_gaps_and_do_not_spread():
    x = tone(10, 50)
    x[1000:1300] = np.nan
    y = apply_display_filter(x, FS, standard_filter("eeg", 50.0))
    assert np.isnan(y[1000:1300]).all()
    assert np.isfinite(y[:1000]).all() and np.isfinite(y[1300:]).all()


def test_cutoffs_at_or_above_nyquist_are_skipped():
    assert filter_sos(50.0, DisplayFilter(lowpass_hz=35.0, notch_hz=50.0)) is None
    x = tone(1, 10, fs=50.0)
    np.testing.assert_allclose(apply_display_filter(x, 50.0, DisplayFilter(lowpass_hz=35.0)),
                               x.astype(np.float32))


def test_short_window_does_not_fail():
    y = apply_display_filter(np.array([1.0, 2.0, 3.0]), FS, standard_filter("eeg"))
    assert y.shape == (3,) and np.isfinite(y).all()


@pytest.mark.parametrize("role,kind,band", [("F4-M1", "eeg", (0.3, 35.0)),
                                            ("LOC", "eog", (0.3, 35.0)),
                                            ("CHIN", "emg", (10.0, 100.0))])
def test_standard_filters(role, kind, band):
    assert signal_kind(role) == kind
    flt = standard_filter(kind, 50.0)
    assert (flt.highpass_hz, flt.lowpass_hz, flt.notch_hz) == (*band, 50.0)
    assert flt.describe() == f"{band[0]:g}–{band[1]:g} Hz, notch 50"
    assert RAW.describe() == "raw" and not RAW.is_active
