"""Amplitude tools of the waveform view.

* SlowWaveRuler: a horizontal band exactly 75 uV tall in the F4-M1 row (the AASM slow-wave
  criterion, measured frontally), drawn in data units so it always shows 75 uV at the row's
  current gain. Drag it up or down to lay it over a wave.
* Caliper: click two points of one row to read the peak-to-peak amplitude and the time between.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

SLOW_WAVE_UV = 75.0


class SlowWaveRuler(pg.LinearRegionItem):
    """A 75-uV tall band, movable as a whole (its edges are locked to keep the height)."""

    def __init__(self, plot: pg.PlotItem, height_uv: float = SLOW_WAVE_UV):
        super().__init__(values=(-height_uv / 2, height_uv / 2), orientation="horizontal",
                         movable=True, brush=pg.mkBrush(QColor(255, 255, 255, 28)),
                         pen=pg.mkPen(QColor(255, 255, 255, 140), width=1))
        for line in self.lines:
            line.setMovable(False)
        self.text = pg.InfLineLabel(self.lines[1], text=f"{height_uv:g} µV", position=0.01,
                                    anchors=[(0, 0), (0, 0)], color=(230, 230, 230))
        self.setZValue(20)
        plot.addItem(self, ignoreBounds=True)

    def span_uv(self) -> float:
        low, high = self.getRegion()
        return float(high - low)


@dataclass(frozen=True)
class Measurement:
    key: str            # row key
    duration_s: float   # time between the two clicks
    amplitude: float    # absolute difference (peak-to-peak) in the row's unit


class Caliper:
    """First click sets point A, second click (same row) measures, a third one starts again."""

    def __init__(self):
        self.measurement: Measurement | None = None
        self._anchor: tuple[str, float, float] | None = None
        self._plot: pg.PlotItem | None = None
        self._items: list = []

    def detach(self) -> None:
        """Remove the marks (on paging and when rows are rebuilt)."""
        if self._plot is not None:
            for item in self._items:
                self._plot.removeItem(item)
        self._items, self._plot, self._anchor = [], None, None

    def _add(self, plot: pg.PlotItem, item) -> None:
        self._plot = plot
        plot.addItem(item, ignoreBounds=True)
        self._items.append(item)

    def click(self, key: str, plot: pg.PlotItem, x: float, y: float,
              unit: str = "µV") -> Measurement | None:
        if self._anchor is None or self._anchor[0] != key or self._plot is not plot:
            self.detach()
            self._anchor = (key, x, y)
            self._add(plot, pg.ScatterPlotItem([x], [y], size=7, brush=pg.mkBrush("w")))
            return None
        _, x0, y0 = self._anchor
        self.measurement = Measurement(key, abs(x - x0), abs(y - y0))
        self._add(plot, pg.ScatterPlotItem([x], [y], size=7, brush=pg.mkBrush("w")))
        self._add(plot, pg.PlotCurveItem([x0, x, x], [y0, y0, y],
                                         pen=pg.mkPen("w", width=1, style=Qt.PenStyle.DashLine)))
        text = pg.TextItem(f"{self.measurement.amplitude:.0f} {unit} p-p · {self.measurement.duration_s:.2f} s",
                           color="w", anchor=(0, 0), fill=pg.mkBrush(0, 0, 0, 160))
        text.setPos(max(x, x0), max(y, y0))
        self._add(plot, text)
        self._anchor = None
        return self.measurement
