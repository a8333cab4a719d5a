"""The SleepVLM epoch renderer against the training recipe.

The reference image is drawn with matplotlib exactly as the spec describes the training figure
(Agg, 4.48 x 2.24 in at 100 dpi, axes filling the figure, traces then grid), from the same
conditioned samples; the reference conditioning is scipy's butter/filtfilt/iirnotch applied to
the whole signal, as in training.
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from PIL import Image
from scipy import signal
from skimage.metrics import structural_similarity

from sleepvlm_ws.core.signals.conditioning import EPOCH_SAMPLES, PAD_S, filter_signal
from sleepvlm_ws.core.signals.montage import ROLES
from sleepvlm_ws.core.signals.render import (IMAGE_HEIGHT, IMAGE_WIDTH, RENDERER_VERSION, ROLE_COLOURS,
                                             EpochWindow, condition, condition_epoch, draw_epoch,
                                             epoch_window_span, render_epoch, render_png)

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

SSIM_FLOOR = 0.95       # the brief asks for >= 0.9; the renderer reaches ~0.99
BAND_PX = IMAGE_HEIGHT / 6
GRID_ROWS = {37, 75, 112, 149, 187}


# ----------------------------------------------------------------------------- references

def matplotlib_reference(traces: dict[str, np.ndarray | None]) -> np.ndarray:
    """The training figure, drawn with matplotlib from the spec, as a (224, 448, 3) array."""
    colours = ["#FFFF00", "#00FF00", "#FF0000", "#00FFFF", "#FF00FF", "#0000FF"]
    fig = Figure(figsize=(4.48, 2.24), dpi=100, facecolor="black")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_facecolor("black")
    t = np.linspace(0, 30, 3000)
    for k, role in enumerate(ROLES):
        trace = traces.get(role)
        if trace is None:
            continue
        lo, hi = (-40.0, 40.0) if role == "CHIN" else (-50.0, 50.0)
        y = (6 - k - 0.5) / 6 + (trace - (lo + hi) / 2) / (hi - lo) / 6
        ax.plot(t, y, color=colours[k], linewidth=0.6, antialiased=True)
    for second in range(1, 30):
        major = second % 5 == 0
        ax.axvline(second, color="#404040", alpha=0.8 if major else 0.6, linewidth=0.8 if major else 0.5)
    for k in range(1, 6):
        ax.axhline(k / 6, color="#404040", alpha=0.8, linewidth=0.8)
    ax.set_xlim(0, 30)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    assert image.shape == (224, 448, 3)
    return image


def whole_signal_conditioning(x: np.ndarray, fs: float, kind: str, training_grid: bool = False) -> np.ndarray:
    """The training pipeline on a whole signal: butter(b, a) + filtfilt, notch, linear to 100 Hz,
    on an exact 1/100-s grid or (``training_grid``) on the training resampler's grid: the
    whole signal's N samples become M = round(N x 100 / fs) spanning the same first and last
    sample (a rate within 0.1 Hz of 100 Hz kept as it is)."""
    nyq = fs / 2
    low, high = (10.0, 100.0) if kind == "emg" else (0.3, 35.0)
    b, a = signal.butter(4, [max(low / nyq, 1e-3), min(high / nyq, 0.999)], btype="bandpass")
    y = signal.filtfilt(b, a, x)
    if 50 < nyq:
        b, a = signal.iirnotch(50, 20, fs)
        y = signal.filtfilt(b, a, y)
    if training_grid:
        if abs(fs - 100) < 0.1:
            return y
        m = int(round(100 / fs * len(x)))
        return np.interp(np.arange(m) * ((len(x) - 1) / (m - 1)), np.arange(len(x)), y)
    t_out = np.arange(int(len(x) / fs * 100)) / 100
    return np.interp(t_out, np.arange(len(x)) / fs, y)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


# ----------------------------------------------------------------------------- signals

def pink(rng, n, fs, rms):
    f = np.fft.rfftfreq(n, 1 / fs)
    x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) / np.maximum(f, 0.5), n)
    return x / x.std() * rms


def emg(rng, n, fs, rms):
    f = np.fft.rfftfreq(n, 1 / fs)
    x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * ((f > 10) & (f < 120)), n)
    return x / x.std() * rms


def epoch_signals(pattern: str, fs: float, seconds: float, seed: int = 0) -> dict[str, np.ndarray | None]:
    """Raw microvolt samples for the six roles, with amplifier offsets and 50 Hz mains."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    eeg = {role: pink(rng, n, fs, 8.0) for role in ROLES[:3]}
    eog = {role: pink(rng, n, fs, 6.0) for role in ROLES[3:5]}
    chin = emg(rng, n, fs, 4.0)
    if pattern == "alpha_wake":
        for role, gain in (("O2-M1", 1.0), ("C4-M1", 0.5), ("F4-M1", 0.3)):
            eeg[role] += gain * 30 * np.sin(2 * np.pi * 10 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * t))
        blinks = np.exp(-((t % 7 - 3) ** 2) / 0.02) * 120
        eog["LOC"] += blinks
        eog["ROC"] -= blinks
        chin = emg(rng, n, fs, 15.0)
    elif pattern == "spindles":
        envelope = np.exp(-(((t % 9) - 4.5) ** 2) / 0.15)
        for role in ROLES[:3]:
            eeg[role] += 40 * envelope * np.sin(2 * np.pi * 13 * t)
    elif pattern == "slow_waves":
        for role, gain in (("F4-M1", 1.0), ("C4-M1", 0.9), ("O2-M1", 0.7)):
            eeg[role] += gain * 75 * np.sin(2 * np.pi * 0.9 * t)        # 150 uV peak to peak
        eog["LOC"] += 40 * np.sin(2 * np.pi * 0.9 * t)
        eog["ROC"] += 40 * np.sin(2 * np.pi * 0.9 * t)
    elif pattern == "muscle_artefact":                 # fast, steep, large: arousal in wake
        burst = (t % 10 > 3) & (t % 10 < 7)
        for role in ROLES[:3]:
            eeg[role] += burst * emg(rng, n, fs, 60.0)
        chin = emg(rng, n, fs, 40.0)
    elif pattern == "flat_chin":
        chin = np.zeros(n)
    signals: dict[str, np.ndarray | None] = {**eeg, **eog, "CHIN": chin}
    for k, role in enumerate(ROLES):
        signals[role] = signals[role] + 150.0 * (k - 3) + 12 * np.sin(2 * np.pi * 50 * t)
    return signals


def make_window(pattern: str, fs: float, seed: int = 0, missing: tuple[str, ...] = ()) -> EpochWindow:
    signals = epoch_signals(pattern, fs, 30 + 2 * PAD_S, seed)
    return EpochWindow({r: (None if r in missing else (x, fs)) for r, x in signals.items()}, PAD_S)


def band_rows(k: int) -> slice:
    """Rows inside band k, away from its separators."""
    return slice(int(np.ceil(k * BAND_PX)) + 2, int((k + 1) * BAND_PX) - 2)


# ----------------------------------------------------------------------------- image tests

CASES = [
    ("alpha_wake", 256.0, ()),
    ("spindles", 256.0, ()),
    ("slow_waves", 256.0, ()),
    ("flat_chin", 256.0, ()),
    ("muscle_artefact", 256.0, ()),
    ("spindles", 100.0, ()),
    ("alpha_wake", 200.0, ()),
    ("slow_waves", 512.0, ()),
    ("alpha_wake", 512.0, ("O2-M1",)),
    ("spindles", 256.0, ("LOC", "ROC")),
]


@pytest.mark.parametrize("pattern,fs,missing", CASES, ids=[f"{p}-{f:g}Hz-{'-'.join(m) or 'full'}" for p, f, m in CASES])
def test_matches_matplotlib_training_figure(pattern, fs, missing):
    window = make_window(pattern, fs, missing=missing)
    image = render_epoch(window)
    reference = matplotlib_reference(condition_epoch(window))
    score = ssim(reference, image)
    print(f"SSIM {pattern} {fs:g} Hz missing={missing}: {score:.4f}")
    assert score >= SSIM_FLOOR, f"SSIM {score:.4f} against the matplotlib training figure"
    # and the ink per band agrees (same brightness, not just the same structure)
    for k in range(6):
        ours, theirs = image[band_rows(k)].mean(), reference[band_rows(k)].mean()
        assert abs(ours - theirs) <= 0.06 * theirs + 0.5, (ROLES[k], ours, theirs)


def test_grid_matches_matplotlib_pixel_for_pixel():
    grid = draw_epoch({}).astype(int)
    reference = matplotlib_reference({}).astype(int)
    assert np.abs(grid - reference)[1:-1].max() <= 2          # matplotlib's first/last row differ by a cap
    assert set(np.flatnonzero(grid[:, 200, 0] > 40)) == GRID_ROWS
    assert grid[100, 15, 0] == pytest.approx(27, abs=1) and grid[100, 75, 0] == pytest.approx(51, abs=1)
    assert (grid[..., 0] == grid[..., 1]).all() and (grid[..., 1] == grid[..., 2]).all()


def test_output_is_448_by_224_rgb_bytes():
    image = render_epoch(make_window("spindles", 256.0))
    assert image.shape == (224, 448, 3) and image.dtype == np.uint8
    assert RENDERER_VERSION == "svlm-render-1"   # what the shipped default pack was trained on
    png = render_png(make_window("spindles", 256.0))
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(decoded, image)


def test_each_trace_is_drawn_in_its_colour_in_its_band():
    t = np.arange(3000) / 100
    for k, role in enumerate(ROLES):
        image = draw_epoch({role: 20 * np.sin(2 * np.pi * 1.5 * t)}).astype(int)
        colour = np.array(ROLE_COLOURS[role])
        bright = image.max(axis=2) > 150                    # trace pixels, not the grey grid
        rows = np.flatnonzero(bright.any(axis=1))
        assert rows.min() >= k * BAND_PX and rows.max() < (k + 1) * BAND_PX, role
        pixels = image[bright]
        # the off channels of the role's colour stay dark where the trace is drawn fully
        off = colour == 0
        assert (pixels[:, off] < 80).all() and (pixels[:, ~off] > 150).all(), role


def test_large_waves_run_into_neighbouring_bands_unclipped():
    t = np.arange(3000) / 100
    image = draw_epoch({"C4-M1": 75 * np.sin(2 * np.pi * 1.0 * t)}).astype(int)
    green = (image[..., 1] > 150) & (image[..., 0] < 80) & (image[..., 2] < 80)
    rows = np.flatnonzero(green.any(axis=1))
    # +-75 uV on a 100 uV band: 0.75 band above and below the band's centre at 1.5 bands
    assert rows.min() < BAND_PX - 5 and rows.max() > 2 * BAND_PX + 5
    assert rows.min() == pytest.approx(0.75 * BAND_PX, abs=2)
    assert rows.max() == pytest.approx(2.25 * BAND_PX, abs=2)
    # a wave far beyond the image is cut at the image border, not at the band
    image = draw_epoch({"F4-M1": 400 * np.sin(2 * np.pi * 0.5 * t)}).astype(int)
    yellow = (image[..., 0] > 150) & (image[..., 1] > 150) & (image[..., 2] < 80)
    assert yellow[0].any() and yellow[3 * int(BAND_PX)].any()


def test_later_roles_are_drawn_over_earlier_ones():
    # F4 at -100 uV lies exactly on C4's centre line; C4, drawn after it, must cover it
    traces = {"F4-M1": np.full(3000, -100.0), "C4-M1": np.zeros(3000)}
    image = draw_epoch(traces).astype(int)
    reference = matplotlib_reference(traces).astype(int)
    row = int(1.5 * BAND_PX)
    r, g, b = image[row, 200]
    assert g > 150 and r < 0.45 * g and b == 0     # drawn the other way round: r == 106
    assert np.abs(image[row - 1:row + 2, 100:300] - reference[row - 1:row + 2, 100:300]).max() <= 12


def test_missing_role_leaves_its_band_black_except_the_grid():
    window = make_window("spindles", 256.0, missing=("ROC",))
    image = render_epoch(window)
    grid_only = draw_epoch({})
    k = ROLES.index("ROC")
    np.testing.assert_array_equal(image[band_rows(k)], grid_only[band_rows(k)])
    assert not np.array_equal(image[band_rows(k - 1)], grid_only[band_rows(k - 1)])


def test_gap_draws_nothing_and_does_not_poison_the_rest():
    fs = 256.0
    signals = epoch_signals("alpha_wake", fs, 30 + 2 * PAD_S, seed=3)
    x = signals["O2-M1"] + 800.0                  # a DC-coupled amplifier's offset
    gapped = x.copy()
    gap = slice(int((PAD_S + 10) * fs), int((PAD_S + 14) * fs))   # 10..14 s into the epoch
    gapped[gap] = np.nan
    clean = condition_epoch(EpochWindow({"O2-M1": (x, fs)}, PAD_S))["O2-M1"]
    holed = condition_epoch(EpochWindow({"O2-M1": (gapped, fs)}, PAD_S))["O2-M1"]
    assert np.isnan(holed[1001:1400]).all() and np.isfinite(holed[:1000]).all()
    far = np.r_[0:700, 1700:3000]                 # 3 s and more away from the gap
    assert np.nanmax(np.abs(holed[far] - clean[far])) < 3.0
    image = draw_epoch({"O2-M1": holed}).astype(int)
    grid = draw_epoch({}).astype(int)
    k = ROLES.index("O2-M1")
    columns = slice(int(10.2 / 30 * IMAGE_WIDTH), int(13.8 / 30 * IMAGE_WIDTH))
    np.testing.assert_array_equal(image[:, columns], grid[:, columns])
    assert (image[band_rows(k), :100] != grid[band_rows(k), :100]).any()


def test_render_is_pure_and_deterministic():
    window = make_window("slow_waves", 256.0, seed=5)
    for x, _ in window.signals.values():
        x[100] = np.nan                               # gaps too must not be filled in place
        x.flags.writeable = False                     # any write into the caller's arrays raises
    before = {r: x.copy() for r, (x, _) in window.signals.items()}
    first = render_png(window)
    assert render_png(window) == first
    np.testing.assert_array_equal(render_epoch(window), render_epoch(window))
    for role, (x, _) in window.signals.items():
        np.testing.assert_array_equal(x, before[role])


def test_absurd_samples_draw_without_error():
    grid = draw_epoch({})
    np.testing.assert_array_equal(draw_epoch({"LOC": np.full(3000, np.nan)}), grid)
    np.testing.assert_array_equal(draw_epoch({"LOC": np.full(3000, 1e7)}), grid)   # far off-image
    saturated = np.where(np.arange(3000) % 2 == 0, 1e300, -1e300)                  # rail to rail
    image = draw_epoch({"LOC": saturated}).astype(int)
    for k in range(6):                                                             # cyan everywhere
        assert (image[band_rows(k), 5:-5, 1] - grid[band_rows(k), 5:-5, 1] > 40).all()
    raw = np.full(int(60 * 256), 20.0)
    raw[7000:7100] = np.inf
    y = condition_epoch(EpochWindow({"C4-M1": (raw, 256.0)}, PAD_S))["C4-M1"]
    assert np.isnan(y).sum() > 0 and np.isfinite(y).sum() > 2900


def test_unknown_role_is_refused():
    with pytest.raises(ValueError, match="Chin"):
        render_epoch(EpochWindow({"Chin": (np.zeros(6000), 100.0)}, PAD_S))


# ----------------------------------------------------------------------------- conditioning

def test_conditioning_removes_mains_and_dc_drift():
    fs = 256.0
    t = np.arange(int(60 * fs)) / fs
    alpha = 20 * np.sin(2 * np.pi * 10 * t)
    x = 500 + 200 * t / 60 + 60 * np.sin(2 * np.pi * 0.02 * t) + 40 * np.sin(2 * np.pi * 50 * t) + alpha
    y = condition(x, fs, "eeg")
    assert y.shape == (6000,)
    middle = slice(1000, 5000)
    expected = 20 * np.sin(2 * np.pi * 10 * np.arange(6000) / 100)
    assert np.max(np.abs(y[middle] - expected[middle])) < 2.0
    assert abs(y[middle].mean()) < 0.5
    mains_only = condition(40 * np.sin(2 * np.pi * 50 * t), fs, "emg")
    assert np.abs(mains_only[middle]).max() < 0.4           # 40 uV of mains -> under 1 %


def test_emg_band_keeps_muscle_and_drops_slow_activity():
    fs = 512.0
    t = np.arange(int(40 * fs)) / fs
    y = condition(30 * np.sin(2 * np.pi * 1 * t) + 10 * np.sin(2 * np.pi * 70 * t), fs, "emg")
    middle = y[1000:3000]
    assert np.abs(middle).max() == pytest.approx(10, abs=1.5)   # 70 Hz kept (aliased at 100 Hz)
    assert np.abs(condition(30 * np.sin(2 * np.pi * 1 * t), fs, "emg")[1000:3000]).max() < 0.5


@pytest.mark.parametrize("fs,kind", [(100.0, "eeg"), (256.0, "eog"), (512.0, "eeg"), (200.0, "emg"), (256.0, "emg")])
def test_windowed_conditioning_matches_whole_night_filtering(fs, kind):
    signals = epoch_signals("slow_waves", fs, 300, seed=11)
    x = signals["CHIN" if kind == "emg" else "LOC" if kind == "eog" else "C4-M1"]
    whole = whole_signal_conditioning(x, fs, kind)
    role = {"eeg": "C4-M1", "eog": "LOC", "emg": "CHIN"}[kind]
    for epoch in (0, 4, 9):                     # first and last: no context on one side
        span = epoch_window_span(epoch, 300.0)
        a, b = int(round(span.start_s * fs)), int(round(span.stop_s * fs))
        window = EpochWindow({role: (x[a:b], fs)}, PAD_S, span.pad_before_s, span.pad_after_s)
        mine = condition_epoch(window)[role]
        reference = whole[epoch * EPOCH_SAMPLES:(epoch + 1) * EPOCH_SAMPLES]
        assert np.max(np.abs(mine - reference)) < 0.05, (epoch, np.max(np.abs(mine - reference)))


@pytest.mark.parametrize("fs,kind", [(200.0, "eeg"), (256.0, "emg"), (50.0, "eog"), (100.0, "emg"),
                                     (512.0, "eeg")])
def test_training_resampling_grid_when_the_epoch_is_placed_in_the_night(fs, kind):
    # training resampled the whole night on a grid stretched by (N - 1) / (M - 1): late in a
    # night the samples sit up to one input sample away from j / 100 s
    seconds = 600.0
    signals = epoch_signals("muscle_artefact", fs, seconds, seed=13)
    role = {"eeg": "C4-M1", "eog": "LOC", "emg": "CHIN"}[kind]
    x = signals[role]
    whole = whole_signal_conditioning(x, fs, kind, training_grid=True)
    plain = whole_signal_conditioning(x, fs, kind)
    for epoch in (0, 9, 19):
        placed = EpochWindow.around({role: (x, fs)}, epoch)
        span = epoch_window_span(epoch, seconds)
        a, b = int(round(span.start_s * fs)), int(round(span.stop_s * fs))
        assert placed.epoch_start_s == epoch * 30.0 and placed.recording_s == seconds
        np.testing.assert_array_equal(placed.signals[role][0], x[a:b])
        mine = condition_epoch(placed)[role]
        reference = whole[epoch * EPOCH_SAMPLES:(epoch + 1) * EPOCH_SAMPLES]
        # the chin at 100 Hz: its 0.999-Nyquist band edge rings longest (0.3 uV here, 0.15 px)
        tolerance = 0.5 if kind == "emg" and fs <= 100 else 0.05
        assert np.isfinite(mine).all()            # at 50 Hz too the last sample is the night's last
        assert np.max(np.abs(mine - reference)) < tolerance, (epoch, np.max(np.abs(mine - reference)))
        # without a place in the night: every 1/100 s from the epoch start, as before
        unplaced = condition_epoch(EpochWindow(placed.signals, PAD_S, span.pad_before_s, span.pad_after_s))[role]
        drawn = np.isfinite(unplaced)             # (at 50 Hz the night's last 10 ms lie past its last sample)
        np.testing.assert_allclose(unplaced[drawn], plain[epoch * EPOCH_SAMPLES:(epoch + 1) * EPOCH_SAMPLES][drawn],
                                   rtol=0, atol=tolerance)
        if epoch == 19 and fs != 100.0:           # the last epoch: the grids are a sample apart
            assert np.nanmax(np.abs(unplaced - reference)) > 1.0
    # the pixels differ accordingly (a placed window is a different image, hence svlm-render-2)
    late = EpochWindow.around({role: (x, fs)}, 19)
    if fs != 100.0:
        assert not np.array_equal(render_epoch(late), render_epoch(
            EpochWindow(late.signals, PAD_S, late.pad_before_s, late.pad_after_s)))


def test_short_context_at_recording_edges_is_located_exactly():
    fs = 256.0
    x = epoch_signals("spindles", fs, 120, seed=2)["F4-M1"]
    span = epoch_window_span(0, 120.0)
    assert span == (0.0, 45.0, 0.0, 15.0)
    assert epoch_window_span(3, 120.0) == (75.0, 120.0, 15.0, 0.0)
    centre = condition_epoch(EpochWindow({"F4-M1": (x[int(15 * fs):int(75 * fs)], fs)}, PAD_S))["F4-M1"]
    short = condition_epoch(EpochWindow({"F4-M1": (x[int(20 * fs):int(75 * fs)], fs)}, PAD_S, pad_before_s=10.0))
    assert np.max(np.abs(short["F4-M1"] - centre)) < 0.2
    wrong = condition_epoch(EpochWindow({"F4-M1": (x[int(20 * fs):int(75 * fs)], fs)}, PAD_S))
    assert np.max(np.abs(wrong["F4-M1"] - centre)) > 10


def test_grouped_filtering_equals_one_channel_at_a_time():
    fs = 256.0
    signals = epoch_signals("alpha_wake", fs, 60, seed=4)
    block = np.vstack([signals[r] for r in ROLES[:5]])
    together = filter_signal(block, fs, "eeg")
    for row, role in zip(together, ROLES[:5]):
        np.testing.assert_allclose(row, filter_signal(signals[role], fs, "eog"), rtol=0, atol=1e-9)


def test_roles_at_different_rates_are_conditioned_each_as_alone():
    eeg = epoch_signals("spindles", 256.0, 30 + 2 * PAD_S, seed=6)
    chin = epoch_signals("alpha_wake", 512.0, 30 + 2 * PAD_S, seed=6)["CHIN"]
    mixed = condition_epoch(EpochWindow({"C4-M1": (eeg["C4-M1"], 256.0), "LOC": (eeg["LOC"], 256.0),
                                         "CHIN": (chin, 512.0)}, PAD_S))
    assert mixed["F4-M1"] is None
    for role, (x, fs) in {"C4-M1": (eeg["C4-M1"], 256.0), "LOC": (eeg["LOC"], 256.0), "CHIN": (chin, 512.0)}.items():
        alone = condition_epoch(EpochWindow({role: (x, fs)}, PAD_S))[role]
        np.testing.assert_allclose(mixed[role], alone, rtol=0, atol=1e-9)
        np.testing.assert_allclose(alone, whole_signal_conditioning(x, fs, "emg" if role == "CHIN" else "eeg")
                                   [int(PAD_S * 100):int(PAD_S * 100) + 3000], rtol=0, atol=1e-6)


def test_too_short_or_bad_input():
    assert np.isnan(condition(np.ones(20), 256.0, "eeg")).all()
    with pytest.raises(ValueError, match="kind"):
        condition(np.ones(1000), 256.0, "ecg")
    with pytest.raises(ValueError, match="sampling rate"):
        condition(np.ones(1000), 0.0, "eeg")


# ----------------------------------------------------------------------------- fast paths
# The renderer computes only what an epoch's samples depend on and reuses work arrays per
# thread; these hold those shortcuts to the plain pipeline they replace.

def scipy_cascade(x: np.ndarray, fs: float, kind: str) -> np.ndarray:
    """Band-pass then notch, each scipy's (b, a) filtfilt with its defaults, at the native rate."""
    nyq = fs / 2
    low, high = (10.0, 100.0) if kind == "emg" else (0.3, 35.0)
    b, a = signal.butter(4, [max(low / nyq, 1e-3), min(high / nyq, 0.999)], btype="bandpass")
    y = signal.filtfilt(b, a, x)
    if 50 < nyq:
        b, a = signal.iirnotch(50, 20, fs)
        y = signal.filtfilt(b, a, y)
    return y


@pytest.mark.parametrize("fs", [100.0, 200.0, 256.0, 512.0, 1000.0])
def test_epoch_conditioning_equals_conditioning_the_whole_window(fs):
    from sleepvlm_ws.core.signals.conditioning import condition_rows
    rng = np.random.default_rng(int(fs))
    for kind, roles in (("eeg", ROLES[:3]), ("emg", ("CHIN",))):
        signals = epoch_signals("muscle_artefact", fs, 60, seed=int(fs))
        for before_s, after_s in ((15.0, 15.0), (0.0, 15.0), (15.0, 0.0), (4.0, 2.5)):
            a = int(round((15 - before_s) * fs))
            b = int(round((45 + after_s) * fs))
            rows = [signals[r][a:b] + rng.uniform(-3000, 3000) for r in roles]   # DC offsets
            mine = condition_rows(rows, fs, kind, before_s, EPOCH_SAMPLES)
            t_out = before_s + np.arange(EPOCH_SAMPLES) / 100
            for row, x in zip(mine, rows):
                reference = np.interp(t_out, np.arange(x.size) / fs, scipy_cascade(x, fs, kind))
                assert np.max(np.abs(row - reference)) < 1e-6, (kind, before_s, after_s)


def test_filter_signal_is_scipys_filtfilt_cascade():
    for fs, kind in ((256.0, "eeg"), (512.0, "emg"), (100.0, "eog")):
        x = epoch_signals("slow_waves", fs, 40, seed=8)["LOC"] + 2000.0
        np.testing.assert_allclose(filter_signal(x, fs, kind), scipy_cascade(x, fs, kind), rtol=0, atol=1e-9)


def test_a_gap_in_one_row_leaves_the_rows_filtered_with_it_alone():
    fs = 256.0
    signals = epoch_signals("spindles", fs, 30 + 2 * PAD_S, seed=9)
    gapped = signals["C4-M1"].copy()
    gapped[int(20 * fs):int(22 * fs)] = np.nan
    window = EpochWindow({"F4-M1": (signals["F4-M1"], fs), "C4-M1": (gapped, fs),
                          "O2-M1": (signals["O2-M1"], fs)}, PAD_S)
    together = condition_epoch(window)
    assert np.isnan(together["C4-M1"]).any()
    for role in ("F4-M1", "O2-M1"):
        alone = condition_epoch(EpochWindow({role: (signals[role], fs)}, PAD_S))[role]
        np.testing.assert_allclose(together[role], alone, rtol=0, atol=1e-9)
        assert np.isfinite(together[role]).all()


def test_rendering_in_several_threads_gives_the_same_images():
    from concurrent.futures import ThreadPoolExecutor
    windows = [make_window(p, fs, seed=s) for p, fs, s in
               (("alpha_wake", 256.0, 1), ("muscle_artefact", 512.0, 2), ("slow_waves", 200.0, 3),
                ("spindles", 100.0, 4))] * 3
    serial = [render_epoch(w) for w in windows]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(render_epoch, windows))
    for one, other in zip(serial, threaded):
        np.testing.assert_array_equal(one, other)


def test_raster_covers_a_flat_line_by_exact_area():
    from sleepvlm_ws.core.signals.raster import polyline_coverage
    line_px = 0.6 * 100 / 72
    coverage = polyline_coverage(np.full((1, 301), 10.3), 0.15, line_px, 20, 50)[0]
    # the stroke covers y 9.883 .. 10.717: 0.117 of row 9 and 0.717 of row 10, nothing else
    np.testing.assert_allclose(coverage[9, 2:40], 10 - (10.3 - line_px / 2), atol=1e-4)
    np.testing.assert_allclose(coverage[10, 2:40], 10.3 + line_px / 2 - 10, atol=1e-4)
    assert coverage[[*range(9), *range(11, 20)]].max() == 0.0
    assert coverage[:, 46:].max() == 0.0                      # the line ends at x = 45


def test_raster_lays_ink_width_times_length_and_breaks_at_gaps():
    from sleepvlm_ws.core.signals.raster import polyline_coverage
    line_px = 0.6 * 100 / 72
    x = np.arange(2000) * 0.15
    y = 30 + 20 * np.sin(x / 7)                               # a gentle wave: no overlaps
    coverage = polyline_coverage(y[None], 0.15, line_px, 60, 310)[0]
    length = np.hypot(0.15, np.diff(y)).sum()
    assert coverage.sum() == pytest.approx(line_px * length, rel=0.01)
    broken = y.copy()
    broken[990:1011] = np.nan                                 # no segment between x = 148.35 and 151.65
    gap = polyline_coverage(broken[None], 0.15, line_px, 60, 310)[0]
    assert gap[:, 149:151].max() == 0.0 and coverage[:, 149:151].sum(axis=0).min() > 0.5
    assert gap[:, 148].sum() > 0.1 and gap[:, 151].sum() > 0.1
    np.testing.assert_allclose(gap[:, :147], coverage[:, :147], rtol=0, atol=1e-6)
