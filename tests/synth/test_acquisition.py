"""Domain randomisation of the training data: the random recording chain and the v2 recipe's nights.

Real parts: the generator's own signals, scipy's filters, the workstation's renderer; each check
has a known answer (a gain, a rate, a filter's attenuation, a mains peak, a montage share).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sleepvlm_ws.core.synth.acquisition import (CENTRAL_SITES, Acquisition, apply_acquisition,
                                                central_derivation, draw_acquisition)

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("F4-M1", "C4-M1", "O2-M1", "LOC", "ROC", "CHIN")


def _quiet(**kw) -> Acquisition:
    """A chain with nothing random in it: no noise, no artefacts, no offset."""
    base = Acquisition(fs=256.0, central_site="C4-M1", gain={}, highpass_hz=0.05, lowpass_hz=100.0,
                       offset_uv=0.0, mains_uv=0.0, pink_uv=0.0)
    return replace(base, **kw)


def _sines(fs: float, seconds: float, hz: float, uv: float = 20.0) -> dict[str, np.ndarray]:
    t = np.arange(int(fs * seconds)) / fs
    return {r: (uv * np.sin(2 * np.pi * hz * t)).astype(np.float32) for r in ROLES}


def _rms(x: np.ndarray, fs: float) -> float:
    core = x[int(5 * fs):-int(5 * fs)]         # away from the filters' start-up
    return float(np.sqrt(np.mean(core.astype(np.float64) ** 2)))


def test_draw_is_reproducible_and_in_range():
    a = draw_acquisition(np.random.default_rng(5))
    b = draw_acquisition(np.random.default_rng(5))
    assert a == b
    many = [draw_acquisition(np.random.default_rng(k)) for k in range(300)]
    assert {m.central_site for m in many} == set(CENTRAL_SITES)
    assert {m.fs for m in many} >= {50.0, 100.0, 256.0, 512.0}
    assert all(0.03 <= m.highpass_hz <= 0.5 and m.lowpass_hz <= 0.45 * m.fs for m in many)
    assert all(m.mains_hz in (50.0, 60.0) for m in many)


def test_gain_rate_and_length_follow_the_chain():
    fs = 512.0
    signals = _sines(fs, 60.0, 10.0)
    acq = _quiet(fs=128.0, gain={"LOC": 2.0, "CHIN": 0.5})
    out, rate = apply_acquisition(signals, fs, acq, np.random.default_rng(0))
    assert rate == 128.0 and set(out) == set(ROLES)
    assert all(x.size == 60 * 128 and x.dtype == np.float32 for x in out.values())
    ref = _rms(out["F4-M1"], rate)
    assert ref == pytest.approx(20 / np.sqrt(2), rel=0.03)     # gain 1, a 10-Hz sine passes
    assert _rms(out["LOC"], rate) == pytest.approx(2.0 * ref, rel=0.02)
    assert _rms(out["CHIN"], rate) == pytest.approx(0.5 * ref, rel=0.02)


def test_hardware_lowpass_and_offset():
    fs = 512.0
    acq = _quiet(fs=256.0, lowpass_hz=35.0, offset_uv=120.0)
    out, rate = apply_acquisition(_sines(fs, 60.0, 80.0), fs, acq, np.random.default_rng(0))
    x = out["C4-M1"]
    assert float(np.mean(x)) == pytest.approx(120.0, abs=1.0)          # the amplifier's DC offset
    assert _rms(x - x.mean(), rate) < 0.25 * 20 / np.sqrt(2)           # 80 Hz under a 35-Hz LP


def test_mains_interference_shows_as_a_peak():
    fs = 512.0
    signals = {r: np.zeros(int(fs * 60), np.float32) for r in ROLES}
    out, rate = apply_acquisition(signals, fs, _quiet(fs=256.0, mains_hz=60.0, mains_uv=10.0),
                                  np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(out["F4-M1"]))
    freqs = np.fft.rfftfreq(out["F4-M1"].size, 1 / rate)
    assert abs(freqs[int(np.argmax(spectrum))] - 60.0) < 0.1


def test_central_site_mixes_the_generated_leads():
    rng = np.random.default_rng(0)
    sig = {"F4-M1": np.full(10, 10.0, np.float32), "C4-M1": np.full(10, 20.0, np.float32),
           "O2-M1": np.full(10, 40.0, np.float32)}
    (wf, wc, wo), ref = CENTRAL_SITES["Cz-A1"]
    np.testing.assert_allclose(central_derivation(sig, "Cz-A1", rng), ref * (10 * wf + 20 * wc + 40 * wo))
    np.testing.assert_allclose(central_derivation(sig, "C4-M1", rng), 20.0)


@pytest.fixture(scope="module")
def recipe_data():
    sys.path.insert(0, str(ROOT / "models" / "training"))
    try:
        from recipe import data
    finally:
        sys.path.remove(str(ROOT / "models" / "training"))
    return data


def test_v2_specs_have_a_large_share_of_one_eeg_nights(recipe_data):
    specs = recipe_data.randomised_specs(400, seed=3)
    assert len({s.seed for s in specs}) == 400 and all(s.acquisition for s in specs)
    one = sum(s.roles == ("C4-M1",) for s in specs) / 400
    full = sum(s.roles == ROLES for s in specs) / 400
    assert 0.28 < one < 0.42 and 0.28 < full < 0.42
    assert recipe_data.randomised_specs(5, seed=3) == specs[:5]


def test_v2_night_is_rendered_on_the_authors_grid(recipe_data, tmp_path):
    from sleepvlm_ws.core.signals.render import (PAD_S, EpochWindow, condition_epoch, draw_epoch,
                                                 epoch_window_span)

    spec = replace(recipe_data.randomised_specs(1, seed=3)[0], hours=0.25, roles=("C4-M1",))
    recipe_data.build_night(spec, tmp_path)
    images = np.load(tmp_path / f"{spec.name}.npz")["images"]
    signals, _stages, n = recipe_data._night_signals(spec)
    (x, fs), = signals.values()
    e = n - 1                                   # the last epoch: the grids differ most there
    span = epoch_window_span(e, n * 30.0)
    window = {"C4-M1": (x[int(round(span.start_s * fs)):int(round(span.stop_s * fs))], fs)}
    placed = EpochWindow(window, PAD_S, span.pad_before_s, span.pad_after_s,
                         epoch_start_s=e * 30.0, recording_s=x.size / fs)
    np.testing.assert_array_equal(images[e], draw_epoch(condition_epoch(placed)))
    image = images[e]
    assert image[..., 1].max() > 200                     # the central EEG's green trace
    assert image[..., 0].max() < 100 and image[..., 2].max() < 100   # no other role drawn
