"""Antialiased thin polylines as area coverage, in numpy: the trace-drawing half of the renderer.

matplotlib's Agg backend, which drew the training images, gives each pixel the exact area of
the stroked line inside it. Here each segment lays down its ink (stroke width x length) over
the pixels it crosses:

- short segments (the usual case: a 0.15 px step in x and a few px in y) as ink points one
  pixel apart along the segment's major axis, each spread over 2 x 2 pixels bilinearly;
- long, steep segments (fast, large waves; artefacts) as a uniform ink density between the
  segment's top and bottom, integrated exactly over pixel rows with a running sum, so their
  cost does not grow with their length.

Where a trace overlaps itself the ink adds up; coverage is the ink clipped to 1, which is what
Agg's union of the stroke amounts to. Coordinates are in pixels, origin at the image's
top-left corner, pixel (row r, column c) covering [c, c + 1] x [r, r + 1].
"""

from __future__ import annotations

import numpy as np

_POINT_SPACING_PX = 1.0   # ink points per pixel of travel along a short segment's major axis
_LONG_SEGMENT_PX = 6.0    # segments travelling further than this use the running-sum method
_MARGIN = 3               # off-image margin of the ink buffer, in pixels


def polyline_coverage(rows: np.ndarray, dx: float, line_px: float, height: int, width: int) -> np.ndarray:
    """Coverage (layers, height, width) in [0, 1] of polylines with vertices at x = i * dx.

    ``rows[layer, i]`` is vertex i's y; a NaN vertex breaks its line (the segments on either
    side are not drawn). Lines are ``line_px`` wide and clipped only at the image border.
    """
    n_layers, n_vertices = rows.shape
    # ink buffer laid out (buffer row, layer, buffer column): one image row of every layer is
    # contiguous, so the running sum down the rows is a cheap loop of vector additions
    buf_w, buf_h = width + 2 * _MARGIN, height + 2 * _MARGIN
    row_stride = n_layers * buf_w
    finite = np.isfinite(rows)
    drawn = (finite[:, :-1] & finite[:, 1:]).ravel()
    rows = np.clip(rows, -1e6, 1e6)     # absurd values stay steep and off-image, without overflow
    y0 = rows[:, :-1].ravel()
    y1 = rows[:, 1:].ravel()
    # keep only the part of each segment whose ink can reach the image rows
    lo, hi = -1.0, height + 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = y1 - y0
        ta = (lo - y0) / rise
        tb = (hi - y0) / rise
        flat = rise == 0
        t0 = np.where(flat, 0.0, np.clip(np.minimum(ta, tb), 0.0, 1.0))
        t1 = np.where(flat, (y0 >= lo) & (y0 <= hi), np.clip(np.maximum(ta, tb), 0.0, 1.0))
        keep = drawn & (t1 > t0)
    keep_index = np.flatnonzero(keep)
    t0 = t0[keep_index]
    span = t1[keep_index] - t0
    rise = rise[keep_index]
    vertex = keep_index % (n_vertices - 1)
    start_x = (vertex + t0) * dx + _MARGIN
    start_y = y0[keep_index] + t0 * rise + _MARGIN
    seg_dx = dx * span
    seg_dy = rise * span
    layer_base = (keep_index // (n_vertices - 1)) * buf_w
    long = np.abs(seg_dy) > _LONG_SEGMENT_PX

    short = ~long
    index, weight = _ink_points(start_x[short], start_y[short], seg_dx[short], seg_dy[short],
                                layer_base[short], line_px, row_stride)
    ink = np.bincount(index, weights=weight, minlength=buf_h * row_stride).reshape(buf_h, row_stride)
    ink = ink.astype(np.float64, copy=False)     # bincount of no points at all is integer
    if long.any():
        index, weight = _ink_spans(start_x[long], start_y[long], seg_dx[long], seg_dy[long],
                                   layer_base[long], line_px, row_stride)
        density = np.bincount(index, weights=weight, minlength=buf_h * row_stride).reshape(buf_h, row_stride)
        for r in range(1, buf_h):        # running sum down the rows
            density[r] += density[r - 1]
        ink += density
    ink = ink.reshape(buf_h, n_layers, buf_w)[_MARGIN:_MARGIN + height, :, _MARGIN:_MARGIN + width]
    np.clip(ink, 0.0, 1.0, out=ink)
    return ink.transpose(1, 0, 2)


def _ink_points(x, y, dx, dy, base, line_px, row_stride):
    """Ink points one pixel apart along each segment, each spread bilinearly over 2 x 2 pixels."""
    steps = np.ceil(np.maximum(dx, np.abs(dy)) / _POINT_SPACING_PX).astype(np.int64)
    np.maximum(steps, 1, out=steps)
    amount = line_px * np.hypot(dx, dy) / steps
    first = np.cumsum(steps) - steps
    frac = (np.arange(int(steps.sum())) - np.repeat(first, steps) + 0.5) / np.repeat(steps, steps)
    px = np.repeat(x - 0.5, steps) + frac * np.repeat(dx, steps)    # pixel-centre coordinates
    py = np.repeat(y - 0.5, steps) + frac * np.repeat(dy, steps)
    ix = np.floor(px)
    iy = np.floor(py)
    fx = px - ix
    fy = py - iy
    corner = np.repeat(base, steps) + iy.astype(np.int64) * row_stride + ix.astype(np.int64)
    amount = np.repeat(amount, steps)
    upper = amount * (1 - fy)
    lower = amount * fy
    index = np.concatenate((corner, corner + 1, corner + row_stride, corner + row_stride + 1))
    weight = np.concatenate((upper * (1 - fx), upper * fx, lower * (1 - fx), lower * fx))
    return index, weight


def _ink_spans(x, y, dx, dy, base, line_px, row_stride):
    """Row steps whose running sum down each column is a uniform ink density over each
    segment's vertical extent, split between the (at most two) columns the stroke touches."""
    length = np.hypot(dx, dy)
    density = line_px * length
    half_y = 0.5 * line_px * dx / length             # the stroke's vertical half-thickness
    top = np.minimum(y, y + dy) - half_y
    bottom = np.maximum(y, y + dy) + half_y
    density /= bottom - top
    half_x = 0.5 * line_px * np.abs(dy) / length     # and horizontal half-thickness
    left = x - half_x
    right = x + dx + half_x
    column = np.floor(left)
    left_share = np.clip((column + 1 - left) / (right - left), 0.0, 1.0)
    top_row = np.floor(top)
    top_frac = top - top_row
    bottom_row = np.floor(bottom)
    bottom_frac = bottom - bottom_row
    col = base + column.astype(np.int64)
    at_top = col + top_row.astype(np.int64) * row_stride
    at_bottom = col + bottom_row.astype(np.int64) * row_stride
    index = np.concatenate((at_top, at_top + row_stride, at_bottom, at_bottom + row_stride))
    step = np.concatenate((density * (1 - top_frac), density * top_frac,
                           -density * (1 - bottom_frac), -density * bottom_frac))
    share = np.tile(left_share, 4)
    return np.concatenate((index, index + 1)), np.concatenate((step * share, step * (1 - share)))
