"""Antialiased thin polylines as area coverage, in numpy: the trace-drawing half of the renderer.

matplotlib's Agg backend, which drew the training images, gives each pixel the exact area of
the stroked line inside it. Here each segment of a polyline lays down its ink (stroke width x
length) as a uniform density over its vertical extent, the stroke's half-thickness included:

- vertically, the density runs from the segment's top to its bottom and is integrated exactly
  over pixel rows: +density where it starts, -density where it ends (each split between the
  two rows around the fractional end), then a running sum down the rows. A flat segment thus
  covers the rows its 0.83-px stroke overlaps, in proportion, as Agg does; a long, steep one
  (fast, large waves, artefacts) costs no more than a short one;
- horizontally, the segment's ink is split between the (at most two) pixel columns that its
  stroke, widened by its horizontal half-thickness, overlaps.

Where a trace overlaps itself the ink adds up; coverage is the ink clipped to 1, which is what
Agg's union of the stroke amounts to. Coordinates are in pixels, origin at the image's
top-left corner, pixel (row r, column c) covering [c, c + 1] x [r, r + 1].

Speed (the renderer must draw well over 100 epochs/s on one core): every step is a whole-array
operation over all segments of all polylines at once, in float32; all polylines share one ink
buffer (row, polyline, column), only as tall as the tallest polyline's rows, so the running
sum is one short loop of vector additions; work arrays are kept per thread and reused, since
fresh large arrays cost page faults on every call.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

_MARGIN = 2               # off-image columns either side of the ink buffer
_REACH_PX = 1.0           # vertices are kept within rows -1 .. height + 1 (ink beyond cannot show)
_F32 = np.float32
_ADD_AT_IS_FAST = np.lib.NumpyVersion(np.__version__) >= "1.25.0"


class InkBand(NamedTuple):
    """One polyline's coverage over the image rows it reaches."""

    top: int                  # first image row of ``coverage``
    coverage: np.ndarray      # (rows, width) float32 in [0, 1]


def polyline_bands(rows: np.ndarray, dx: float, line_px: float, height: int,
                   width: int) -> list[InkBand | None]:
    """Coverage of polylines with vertices at x = i * dx, one ``InkBand`` per row of ``rows``
    (None where the line lays no ink on the image).

    ``rows[layer, i]`` is vertex i's y; a NaN vertex breaks its line (the segments on either
    side are not drawn). Lines are ``line_px`` wide and clipped only at the image border;
    they must end within the image's width (x <= width; the renderer's end at it exactly).

    The coverage arrays are views into this thread's work buffer: use them (or copy them)
    before the next call from the same thread.
    """
    rows = np.asarray(rows, dtype=np.float64)
    n_layers, n_vertices = rows.shape
    if n_vertices < 2 or n_layers == 0:
        return [None] * n_layers
    if not 0 < dx * (n_vertices - 1) <= width * (1 + 1e-9):
        raise ValueError(f"polylines of {n_vertices} vertices {dx} px apart do not fit {width} px")
    segments = _segments(rows, dx, height)
    if segments is None:
        return [None] * n_layers
    x, y_top, rise, keep = segments
    seg_dx = _F32(dx)

    # stroke geometry: ink = width x length, spread over the segment's extent
    length = rise * rise
    length += seg_dx * seg_dx
    np.sqrt(length, out=length)
    half = _F32(0.5 * line_px) / length
    half_y = half * seg_dx                                # vertical half-thickness
    half *= rise                                          # horizontal half-thickness
    half_x = half
    top = y_top - half_y
    extent = half_y
    extent *= 2.0
    extent += rise                                        # bottom - top
    density = length
    density *= _F32(line_px)
    density /= extent
    if keep is not None:
        density *= keep
    # columns: the left-hand one's share of the ink (the stroke is under 1 px wide)
    left = x - half_x
    left += _F32(_MARGIN)
    column = np.floor(left)
    left_share = column + 1.0
    left_share -= left
    half_x *= 2.0
    half_x += seg_dx
    left_share /= half_x
    np.minimum(left_share, 1.0, out=left_share)
    bottom = top + extent
    top_row = np.floor(top)
    bottom_row = np.floor(bottom)

    # each layer's rows in the shared buffer start at its highest ink
    if keep is None:
        first_row = top_row.min(axis=1)
        last_row = bottom_row.max(axis=1)
    else:
        kept = keep > 0
        first_row = np.where(kept, top_row, np.inf).min(axis=1)
        last_row = np.where(kept, bottom_row, -np.inf).max(axis=1)
    present = np.isfinite(first_row)
    first_row = np.where(present, first_row, 0.0).astype(_F32)
    last_row = np.where(present, last_row, 0.0).astype(_F32)
    if keep is not None:                                  # dropped segments: harmless rows, no ink
        top_row = np.where(kept, top_row, first_row[:, None])
        bottom_row = np.where(kept, bottom_row, first_row[:, None])
        top = np.where(kept, top, top_row)
        bottom = np.where(kept, bottom, bottom_row)
    buf_h = int((last_row - first_row).max()) + 2
    buf_w = width + 2 * _MARGIN
    row_stride = n_layers * buf_w
    work = _work(n_layers, rise.shape[1], buf_h * row_stride)

    # flat buffer index of each segment's top and bottom step, left-hand column (exact in float32)
    shift = (first_row * _F32(row_stride) - np.arange(n_layers, dtype=_F32) * _F32(buf_w))[:, None]
    index = work.index
    at = top_row * _F32(row_stride)
    at += column
    at -= shift
    index[0] = at
    np.add(index[0], row_stride, out=index[1])
    np.multiply(bottom_row, _F32(row_stride), out=at)
    at += column
    at -= shift
    index[2] = at
    np.add(index[2], row_stride, out=index[3])
    np.add(index[:4], 1, out=index[4:])                   # the right-hand column

    # ink: top step (its share in the top row, the rest in the next), bottom step likewise, negated
    weight = work.weight
    top_ink = top_row + 1.0
    top_ink -= top
    top_ink *= density
    bottom_ink = bottom_row + 1.0
    bottom_ink -= bottom
    bottom_ink *= density
    weight[4] = top_ink
    np.subtract(density, top_ink, out=weight[5])
    np.negative(bottom_ink, out=weight[6])
    np.subtract(bottom_ink, density, out=weight[7])
    np.multiply(weight[4:], left_share, out=weight[:4])
    weight[4:] -= weight[:4]

    ink = work.ink[:buf_h * row_stride]
    if _ADD_AT_IS_FAST:
        ink.fill(0.0)
        np.add.at(ink, index.reshape(-1), weight.reshape(-1))
    else:                                                 # numpy < 1.25: add.at is very slow
        ink[:] = np.bincount(index.reshape(-1), weights=weight.reshape(-1), minlength=ink.size)
    ink = ink.reshape(buf_h, n_layers, buf_w)
    for r in range(1, buf_h):                             # running sum down the rows
        ink[r] += ink[r - 1]

    bands: list[InkBand | None] = []
    for layer in range(n_layers):
        top_image = int(first_row[layer])
        a = max(top_image, 0)
        b = min(int(last_row[layer]) + 1, height)
        if not present[layer] or a >= b:
            bands.append(None)
            continue
        coverage = ink[a - top_image:b - top_image, layer, _MARGIN:_MARGIN + width]
        np.minimum(coverage, 1.0, out=coverage)
        np.maximum(coverage, 0.0, out=coverage)           # rounding residue below the ink
        bands.append(InkBand(a, coverage))
    return bands


def _segments(rows: np.ndarray, dx: float, height: int):
    """Segments as float32 (x, y_top, rise, keep): x (1, n), the others (layers, n); ``keep``
    is None when every segment is drawn (the usual case) or a 0/1 mask. None when nothing is
    drawn.

    Vertices beyond the rows where ink can reach the image (-1 .. height + 1) are moved onto
    that limit: a steep segment that leaves the image keeps its visible part (spread over its
    whole x step, a shift of at most 0.15 px), and one wholly out there draws only off-image."""
    n_layers, n_vertices = rows.shape
    x = (np.arange(n_vertices - 1, dtype=np.float64) * dx).astype(_F32)[None, :]
    finite = np.isfinite(rows)
    all_finite = bool(finite.all())
    y = np.clip(rows, -_REACH_PX, height + _REACH_PX)
    if not all_finite:
        y[~finite] = 0.0
    y = y.astype(_F32)
    y0, y1 = y[:, :-1], y[:, 1:]
    y_top = np.minimum(y0, y1)
    rise = np.maximum(y0, y1)
    rise -= y_top
    if all_finite:
        return x, y_top, rise, None
    keep = finite[:, :-1] & finite[:, 1:]
    if not keep.any():
        return None
    return x, y_top, rise, keep.astype(_F32)


class _RasterScratch(threading.local):
    """Per-thread work arrays, reused from call to call."""

    shape: tuple[int, int] = (0, 0)
    index: np.ndarray
    weight: np.ndarray
    ink: np.ndarray = np.zeros(0, dtype=_F32)


_WORK = _RasterScratch()


def _work(n_layers: int, n_segments: int, ink_size: int) -> _RasterScratch:
    w = _WORK
    if w.shape != (n_layers, n_segments):
        w.shape = (n_layers, n_segments)
        w.index = np.empty((8, n_layers, n_segments), dtype=np.intp)
        w.weight = np.empty((8, n_layers, n_segments), dtype=_F32)
    if w.ink.size < ink_size:
        w.ink = np.zeros(ink_size, dtype=_F32)
    return w


def polyline_coverage(rows: np.ndarray, dx: float, line_px: float, height: int, width: int) -> np.ndarray:
    """Coverage (layers, height, width) float32 in [0, 1] of polylines with vertices at
    x = i * dx (see ``polyline_bands``), as whole-image planes."""
    rows = np.asarray(rows, dtype=np.float64)
    out = np.zeros((rows.shape[0], height, width), dtype=_F32)
    for layer, band in enumerate(polyline_bands(rows, dx, line_px, height, width)):
        if band is not None:
            out[layer, band.top:band.top + band.coverage.shape[0]] = band.coverage
    return out
