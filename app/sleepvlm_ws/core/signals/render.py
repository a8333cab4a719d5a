"""The SleepVLM epoch image: one 30-s epoch drawn as the model saw it in training.

``render_epoch(window)`` is a pure function from raw microvolt samples around one epoch to
a 448 x 224 RGB image (uint8). It reproduces the authors' matplotlib figure (see
shared/spec/sleepvlm-compat.md) without matplotlib or Qt:

- six bands, top to bottom F4-M1, C4-M1, O2-M1, LOC, ROC, chin; -50..+50 uV (chin -40..+40 uV)
  spans one band height; traces are never clipped at the band, only at the image border;
- traces 0.6 pt wide, antialiased, drawn in role order; then the #404040 grid on top
  (1-s lines 0.5 pt alpha 0.6, 5-s lines 0.8 pt alpha 0.8, band separators 0.8 pt alpha 0.8),
  pixel-snapped as matplotlib's Agg backend snaps straight lines.

Traces are rasterised by ``raster.polyline_bands`` (area coverage, as Agg computes it,
approximated in numpy, over the rows each trace reaches) and composited source-over in role
order on float32 R, G, B planes; the constant grid is one precomputed multiply-add. Conditioning
computes only what the epoch's samples depend on (``conditioning.condition_rows``). One epoch
costs about 3 ms on one core (``benchmarks/bench_render.py``). ``tests/signals/test_render.py`` holds
the result against a matplotlib rendering of the same samples (SSIM about 0.99);
``benchmarks/bench_renderer_fidelity.py`` against the authors' own renderer, given a copy of it
(SSIM >= 0.993 per epoch when the window is placed in its night, see ``EpochWindow``).

The caller reads each role's derivation over ``epoch_window_span(...)`` and builds an
``EpochWindow``; ``render_png`` gives the bytes for the model request. Any change that alters
pixels must bump the renderer's version (``RENDERER_VERSION``, or ``AUTHORS_RENDERER_VERSION``
for the authors' placement): AI answers are keyed on the version of the pack that gave them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Mapping, NamedTuple

import numpy as np
from PIL import Image

from ..base.stages import EPOCH_SECONDS
from .conditioning import BANDS_HZ, EPOCH_SAMPLES, PAD_S, authors_grid, condition, condition_rows
from .montage import EMG_ROLES, EOG_ROLES, ROLES
from .raster import polyline_bands

# The pixels the workstation renders and keys stored answers by. The shipped default pack (v1)
# was trained on them: windows without ``epoch_start_s``/``recording_s`` (every 1/100 s).
RENDERER_VERSION = "svlm-render-1"
# The authors' own pixels (their whole-night resampling grid, ``EpochWindow`` with
# ``epoch_start_s`` and ``recording_s``; SSIM >= 0.99 against their renderer on every epoch,
# docs/measurements/renderer-fidelity.txt). The v2 training recipe renders with it, and so does
# the scoring run for any pack that declares it (SleepVLM's own weights, converted), since a
# pack only answers as trained on the pixels it was trained on (SSIM 0.95-0.98 between the two
# late in a night at 50/200/256/512 Hz, identical at 100 Hz).
AUTHORS_RENDERER_VERSION = "svlm-render-2"
# What a model pack may declare (its manifest's renderer_version): the scoring run renders each
# pack's epochs as that pack was trained (core.pipeline.epoch_images.read_epoch_window).
RENDERERS = (RENDERER_VERSION, AUTHORS_RENDERER_VERSION)


def check_renderer(name: object) -> str:
    """``name`` when it is one of ``RENDERERS``; else ValueError (one line).

    Parameters
    ----------
    name : object
        A renderer version, e.g. a pack manifest's ``renderer_version``.

    Returns
    -------
    str
    """
    if name not in RENDERERS:
        raise ValueError(f"unknown renderer {name!r}; this workstation renders "
                         f"{', '.join(RENDERERS)}")
    return str(name)

IMAGE_WIDTH = 448
IMAGE_HEIGHT = 224
DPI = 100.0
ROLE_COLOURS: dict[str, tuple[int, int, int]] = {
    "F4-M1": (0xFF, 0xFF, 0x00),
    "C4-M1": (0x00, 0xFF, 0x00),
    "O2-M1": (0xFF, 0x00, 0x00),
    "LOC": (0x00, 0xFF, 0xFF),
    "ROC": (0xFF, 0x00, 0xFF),
    "CHIN": (0x00, 0x00, 0xFF),
}
ROLE_RANGE_UV = {role: (80.0 if role in EMG_ROLES else 100.0) for role in ROLES}  # one band height
TRACE_WIDTH_PT = 0.6
GRID_GREY = 0x40
MINOR_GRID = (0.5, 0.6)      # (width pt, alpha): every second
MAJOR_GRID = (0.8, 0.8)      # every 5 s, and the band separators

__all__ = [
    "RENDERER_VERSION", "AUTHORS_RENDERER_VERSION", "RENDERERS", "check_renderer", "PAD_S", "IMAGE_WIDTH",
    "IMAGE_HEIGHT", "ROLE_COLOURS", "ROLE_RANGE_UV",
    "EpochWindow", "WindowSpan", "epoch_window_span", "role_kind",
    "condition", "condition_epoch", "draw_epoch", "render_epoch", "render_png",
]


def role_kind(role: str) -> str:
    """"emg" for the chin, "eog" for LOC/ROC, "eeg" for the rest."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return "emg" if role in EMG_ROLES else "eog" if role in EOG_ROLES else "eeg"


@dataclass(frozen=True, eq=False)     # holds arrays: compared and hashed by identity
class EpochWindow:
    """Raw samples around one epoch.

    ``signals``: role -> (microvolt samples, sampling rate in Hz), or None / absent for a
    missing role (drawn as an empty band). Each array starts ``pad_before_s`` seconds before
    the epoch (default ``pad_s``) and runs to ``pad_after_s`` seconds after its end (default
    ``pad_s``); near the start or end of a recording the context is shorter on that side.
    Samples that are NaN (gaps) are drawn as no trace. The arrays are never modified.

    ``epoch_start_s`` (the epoch's start on the recording's timeline) and ``recording_s`` (the
    whole recording's length) place the 100-Hz samples where the training pipeline put them:
    it resampled the whole night at once, on a grid stretched by (N - 1) / (M - 1) (see
    ``conditioning``), so late in a night at 200 or 256 Hz its samples fall up to 5-6 ms later
    than every 1/100 s. Each array must then start at recording sample
    round((epoch_start_s - before_s) x fs), as ``epoch_window_span`` + ``round`` gives.
    Without them the samples are taken every 1/100 s from the epoch start.
    ``EpochWindow.around`` builds a window from whole-recording arrays with both set.
    """

    signals: Mapping[str, tuple[np.ndarray, float] | None]
    pad_s: float
    pad_before_s: float | None = None
    pad_after_s: float | None = None
    epoch_start_s: float | None = None
    recording_s: float | None = None

    @classmethod
    def around(cls, recording: Mapping[str, tuple[np.ndarray, float] | None], epoch: int,
               pad_s: float = PAD_S) -> "EpochWindow":
        """The window of ``epoch`` out of whole-recording arrays, on the training pipeline's grid.

        Each array is sliced (a view, not a copy) at ``epoch_window_span``; the recording's
        length is taken as that of the longest array. ``epoch_start_s`` and ``recording_s`` are
        set, so the window renders on the authors' resampling grid.

        Parameters
        ----------
        recording : mapping
            Role -> (whole-night microvolt samples starting at second 0, sampling rate in Hz), or
            None for a missing role.
        epoch : int
            The epoch's index (0: the recording's first 30 s).
        pad_s : float
            Context wanted on each side, in seconds (default ``PAD_S``, 15 s).

        Returns
        -------
        EpochWindow
        """
        present = {r: e for r, e in recording.items() if e is not None}
        duration = max((np.asarray(x).size / float(fs) for x, fs in present.values()), default=0.0)
        span = epoch_window_span(epoch, duration, pad_s)
        signals: dict[str, tuple[np.ndarray, float] | None] = {}
        for role, entry in recording.items():
            if entry is None:
                signals[role] = None
                continue
            x, fs = entry
            a, b = int(round(span.start_s * fs)), int(round(span.stop_s * fs))
            signals[role] = (x[a:b], fs)
        return cls(signals, pad_s, span.pad_before_s, span.pad_after_s,
                   epoch_start_s=epoch * EPOCH_SECONDS, recording_s=duration)

    @property
    def before_s(self) -> float:
        """Seconds from each array's first sample to the epoch start."""
        return float(self.pad_s if self.pad_before_s is None else self.pad_before_s)

    @property
    def after_s(self) -> float:
        """Seconds of context after the epoch end."""
        return float(self.pad_s if self.pad_after_s is None else self.pad_after_s)


class WindowSpan(NamedTuple):
    start_s: float        # where to start reading, seconds on the recording timeline
    stop_s: float         # where to stop reading
    pad_before_s: float   # context actually available before the epoch
    pad_after_s: float    # context actually available after the epoch


def epoch_window_span(epoch: int, duration_s: float, pad_s: float = PAD_S) -> WindowSpan:
    """The stretch of recording to read for ``epoch``: the epoch plus up to ``pad_s`` seconds
    each side, cut at the start (0) and end (``duration_s``) of the recording.

    Parameters
    ----------
    epoch : int
        The epoch's index (0: the recording's first 30 s).
    duration_s : float
        The recording's length in seconds.
    pad_s : float
        Context wanted on each side, in seconds (default ``PAD_S``, 15 s).

    Returns
    -------
    WindowSpan
        ``start_s`` and ``stop_s`` to read (a last epoch that the recording ends inside is cut
        too), and ``pad_before_s`` / ``pad_after_s``: the context actually available.
    """
    epoch_start = epoch * EPOCH_SECONDS
    epoch_end = epoch_start + EPOCH_SECONDS
    start = max(0.0, epoch_start - pad_s)
    stop = max(epoch_start, min(float(duration_s), epoch_end + pad_s))
    return WindowSpan(start, stop, epoch_start - start, max(0.0, stop - epoch_end))


def condition_epoch(window: EpochWindow) -> dict[str, np.ndarray | None]:
    """Role -> the epoch's 3000 conditioned samples at 100 Hz (NaN in gaps), or None if missing."""
    unknown = sorted(set(window.signals) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(map(repr, unknown))}; expected {', '.join(ROLES)}")
    # roles sharing a filter, rate and length are filtered together (EEG and EOG share a band)
    groups: dict[tuple, list[str]] = {}
    for role in ROLES:
        entry = window.signals.get(role)
        if entry is None:
            continue
        samples, fs = entry
        samples = np.asarray(samples)
        if samples.ndim != 1:
            raise ValueError(f"{role}: expected 1-D samples, got shape {samples.shape}")
        key = (float(fs), BANDS_HZ[role_kind(role)], samples.size)
        groups.setdefault(key, []).append(role)
    traces: dict[str, np.ndarray | None] = {role: None for role in ROLES}
    for (fs, _band, _size), roles in groups.items():
        rows = [window.signals[role][0] for role in roles]
        grid = None
        if window.epoch_start_s is not None and window.recording_s is not None:
            first_sample = int(round((window.epoch_start_s - window.before_s) * fs))
            grid = authors_grid(fs, int(round(window.recording_s * fs)), window.epoch_start_s, first_sample)
        conditioned = condition_rows(rows, fs, role_kind(roles[0]), window.before_s, EPOCH_SAMPLES, grid)
        for role, row in zip(roles, conditioned):
            traces[role] = row
    return traces


# ----------------------------------------------------------------------------- drawing

_PT_TO_PX = DPI / 72.0
_TRACE_PX = TRACE_WIDTH_PT * _PT_TO_PX
# x of sample i is 30 * i / 2999 s, as matplotlib's np.linspace(0, 30, 3000) put it
_SAMPLE_DX = IMAGE_WIDTH / (EPOCH_SAMPLES - 1)


def _band_y(role_index: int, trace_uv: np.ndarray, range_uv: float) -> np.ndarray:
    """Image row coordinate (0 = top edge, 224 = bottom edge) of each sample."""
    band = 1.0 / len(ROLES)
    y_axes = (len(ROLES) - role_index - 0.5) * band + trace_uv / range_uv * band
    return (1.0 - y_axes) * IMAGE_HEIGHT


def _box_coverage(centre: float, width: float, size: int) -> np.ndarray:
    """Fraction of each unit pixel 0..size-1 covered by [centre - width/2, centre + width/2]."""
    edges = np.arange(size, dtype=np.float64)
    return np.clip(np.minimum(edges + 1, centre + width / 2) - np.maximum(edges, centre - width / 2), 0.0, 1.0)


def _grid_overlay() -> tuple[np.ndarray, np.ndarray]:
    """(keep, add) planes: the grid composited over an image plane is ``plane * keep + add``.

    Agg snaps straight lines: a line's centre moves to the middle of pixel floor(c + 0.5)."""
    vertical = np.zeros(IMAGE_WIDTH)
    for second in range(1, int(EPOCH_SECONDS)):
        width_pt, alpha = MAJOR_GRID if second % 5 == 0 else MINOR_GRID
        centre = np.floor(second / EPOCH_SECONDS * IMAGE_WIDTH + 0.5) + 0.5
        vertical += alpha * _box_coverage(centre, width_pt * _PT_TO_PX, IMAGE_WIDTH)
    horizontal = np.zeros(IMAGE_HEIGHT)
    for k in range(1, len(ROLES)):
        width_pt, alpha = MAJOR_GRID
        centre = np.floor(k / len(ROLES) * IMAGE_HEIGHT + 0.5) + 0.5
        horizontal += alpha * _box_coverage(centre, width_pt * _PT_TO_PX, IMAGE_HEIGHT)
    # vertical lines first, then the separators over them (source-over, in that order)
    keep = (1 - vertical)[None, :] * (1 - horizontal)[:, None]
    add = GRID_GREY * (vertical[None, :] * (1 - horizontal)[:, None] + horizontal[:, None])
    return keep.astype(np.float32), add.astype(np.float32)


_GRID_KEEP, _GRID_ADD = _grid_overlay()


def draw_epoch(traces: Mapping[str, np.ndarray | None]) -> np.ndarray:
    """Draw already-conditioned epochs (role -> 3000 samples at 100 Hz, microvolts, NaN = no
    trace; None or absent = empty band) into the (224, 448, 3) uint8 SleepVLM image."""
    drawn: list[str] = []
    rows = np.empty((len(ROLES), EPOCH_SAMPLES), dtype=np.float64)
    for k, role in enumerate(ROLES):
        trace = traces.get(role)
        if trace is None:
            continue
        trace = np.asarray(trace, dtype=np.float64)
        if trace.shape != (EPOCH_SAMPLES,):
            raise ValueError(f"{role}: expected {EPOCH_SAMPLES} samples at 100 Hz, got shape {trace.shape}")
        rows[len(drawn)] = _band_y(k, trace, ROLE_RANGE_UV[role])
        drawn.append(role)
    planes = np.zeros((3, IMAGE_HEIGHT, IMAGE_WIDTH), dtype=np.float32)     # R, G, B
    if drawn:
        bands = polyline_bands(rows[:len(drawn)], _SAMPLE_DX, _TRACE_PX, IMAGE_HEIGHT, IMAGE_WIDTH)
        for role, band in zip(drawn, bands):        # source-over, in role order
            if band is None:
                continue
            rows_here = slice(band.top, band.top + band.coverage.shape[0])
            through = 1.0 - band.coverage
            ink = None
            for channel, level in enumerate(ROLE_COLOURS[role]):
                region = planes[channel, rows_here]
                region *= through
                if level:
                    if ink is None:
                        ink = np.float32(level) * band.coverage
                    region += ink
    planes *= _GRID_KEEP
    planes += _GRID_ADD
    np.rint(planes, out=planes)
    image = np.empty((IMAGE_HEIGHT, IMAGE_WIDTH, 3), dtype=np.uint8)
    for channel in range(3):       # values within 0..255 by construction: no clip needed
        image[..., channel] = planes[channel]
    return image


def render_epoch(window: EpochWindow) -> np.ndarray:
    """THE pure function: raw samples around an epoch -> (224, 448, 3) uint8 RGB SleepVLM image."""
    return draw_epoch(condition_epoch(window))


def render_png(window: EpochWindow) -> bytes:
    """``render_epoch`` encoded as PNG (what the model request carries).

    Parameters
    ----------
    window : EpochWindow
        The raw samples around one epoch.

    Returns
    -------
    bytes
        The 448 x 224 RGB SleepVLM image as a PNG file (compression level 1: fast).

    Raises
    ------
    ValueError
        For a role the renderer does not know or samples that are not 1-D.
    """
    buffer = io.BytesIO()
    Image.fromarray(render_epoch(window)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
