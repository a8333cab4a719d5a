"""Small pyqtgraph pieces shared by the waveform and hypnogram views."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pyqtgraph as pg
from PySide6.QtCore import QLineF, QRectF
from PySide6.QtGui import QColor

from ..core.base.stages import EPOCH_SECONDS

pg.setConfigOptions(antialias=False)

BACKGROUND = "#101418"
FOREGROUND = "#c8ccd0"


def clock_text(start: datetime | None, seconds: float, *, with_seconds: bool = True) -> str:
    """Clock time ``seconds`` after the recording start (elapsed time when the start is unknown)."""
    fmt = "%H:%M:%S" if with_seconds else "%H:%M"
    if start is not None:
        return (start + timedelta(seconds=float(seconds))).strftime(fmt)
    total = int(math.floor(seconds))
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}" if with_seconds else f"{h:02d}:{m:02d}"


class ClockAxis(pg.AxisItem):
    """Bottom axis in seconds from the recording start, labelled with clock time HH:MM:SS."""

    def __init__(self, start: datetime | None = None, **kwargs):
        super().__init__(orientation="bottom", **kwargs)
        self.start = start

    def set_start(self, start: datetime | None) -> None:
        self.start = start
        self.picture = None
        self.update()

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802 (pyqtgraph API)
        span = maxVal - minVal
        if span <= 0:
            return super().tickSpacing(minVal, maxVal, size)
        # Choose "nice" clock spacings so that labels are about 80 px apart.
        steps = (1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800)
        target = span * 80.0 / max(size, 1.0)
        major = next((s for s in steps if s >= target), steps[-1])
        minor = next((s for s in reversed(steps) if s <= major / 4), major)
        return [(major, 0), (minor, 0)] if minor < major else [(major, 0)]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph API)
        with_seconds = spacing < 60
        return [clock_text(self.start, v, with_seconds=with_seconds) for v in values]


class _ViewSized(pg.GraphicsObject):
    """A GraphicsObject that covers exactly the view box it is in (redrawn when the view moves)."""

    def _view_rect(self) -> QRectF:
        vb = self.getViewBox()
        return QRectF() if vb is None else vb.viewRect()

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt API)
        return self._view_rect()

    def viewRangeChanged(self):  # noqa: N802 (pyqtgraph API)
        self.prepareGeometryChange()
        self.update()


class SecondGrid(_ViewSized):
    """Vertical grid of the waveform rows: a line every second, heavier every 5 s, heaviest at
    epoch borders, and the scored epoch shaded. Paints only what is in view (cheap to page)."""

    def __init__(self):
        super().__init__()
        self.setZValue(-100)
        self.epoch_span: tuple[float, float] | None = None
        self._pens = (pg.mkPen(QColor(64, 64, 64, 150), width=1),
                      pg.mkPen(QColor(90, 90, 90, 220), width=1),
                      pg.mkPen(QColor(150, 150, 110, 255), width=2))
        self._shade = pg.mkBrush(QColor(60, 70, 40, 70))

    def set_epoch_span(self, start_s: float, stop_s: float) -> None:
        self.epoch_span = (start_s, stop_s)
        self.update()

    def paint(self, painter, *args):
        rect = self._view_rect()
        if rect.isEmpty() or rect.width() > 600:  # zoomed far out: no per-second lines
            return
        top, bottom = rect.top(), rect.bottom()
        if self.epoch_span is not None:
            a, b = self.epoch_span
            painter.fillRect(QRectF(a, top, b - a, bottom - top), self._shade)
        for second in range(math.ceil(rect.left()), math.floor(rect.right()) + 1):
            if second % EPOCH_SECONDS == 0:
                pen = self._pens[2]
            elif second % 5 == 0:
                pen = self._pens[1]
            else:
                pen = self._pens[0]
            painter.setPen(pen)
            painter.drawLine(QLineF(second, top, second, bottom))


class EventRegions(_ViewSized):
    """Translucent bands over one waveform row: detected events, each ``(start_s, stop_s,
    colour)``, painted across the row's height. Paints only what is in view; ``set_regions``
    replaces the whole set (paging reuses the item)."""

    def __init__(self, z: float = -50):
        super().__init__()
        self.setZValue(z)
        self.regions: list[tuple[float, float, str]] = []
        self._brushes: dict[str, object] = {}

    def set_regions(self, regions) -> None:
        self.regions = [(float(a), float(b), str(c)) for a, b, c in regions]
        self.prepareGeometryChange()
        self.update()

    def _brush(self, colour: str):
        brush = self._brushes.get(colour)
        if brush is None:
            brush = self._brushes[colour] = pg.mkBrush(QColor(colour))
        return brush

    def paint(self, painter, *args):
        rect = self._view_rect()
        if rect.isEmpty() or not self.regions:
            return
        painter.setPen(pg.mkPen(None))
        for a, b, colour in self.regions:
            if b < rect.left() or a > rect.right():
                continue
            painter.fillRect(QRectF(a, rect.top(), max(b - a, 0.05), rect.height()), self._brush(colour))
