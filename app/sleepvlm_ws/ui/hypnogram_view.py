"""HypnogramView: the whole night as a step plot, W on top, R raised and red, N3 at the bottom.

Unscored epochs are gaps. The view keeps one level array and a handful of curves (a thin step
line plus one thick curve per stage), so scoring one epoch only re-sets two or three curves.

The model's suggestions are a second layer: a thin dotted violet step line drawn a little above
the stage it names, so it never hides the technologist's solid line and a disagreement shows as
the two lines parting. It is only a view: the technologist's stages are what gets exported.

Epochs the review queue flags (``core.review.review_queue``) are marked by short ticks along the top
edge: orange until the technologist has scored the epoch, grey after.

The technologist's own scoring comes first: its curves lie above the model's and the second
opinion's lines, and when the night is shown so wide that an epoch is narrower than
``MIN_EPOCH_PX`` pixels (an 8-h night in a 1,000-px plot gives about one pixel an epoch), each
scored epoch also gets a square mark of ``SCORED_MARK_PX`` in its stage's colour, so six scored
epochs of 960 are six marks one can see and click, not six lost pixels. The wheel zooms the time
axis about the cursor (the epoch being scored), as EDFbrowser's and Profusion's do, so zooming
in never pushes the epoch on screen out of view; dragging still pans.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Iterable

import numpy as np
import pyqtgraph as pg
from pyqtgraph import Point
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ..core.base.stages import EPOCH_SECONDS, Stage
from .plot_items import BACKGROUND, ClockAxis

#: Height of each stage on the plot (clinical convention: R drawn between W and N1).
STAGE_LEVELS = {Stage.ARTEFACT: 6.0, Stage.W: 5.0, Stage.R: 4.0, Stage.N1: 3.0, Stage.N2: 2.0,
                Stage.N3: 1.0}
STAGE_COLOURS = {Stage.W: "#F0B030", Stage.R: "#E03030", Stage.N1: "#90D8F8",
                 Stage.N2: "#3090E0", Stage.N3: "#2040B0", Stage.ARTEFACT: "#909090"}
#: The suggestion layer: a dotted line this far above the suggested stage's level.
SUGGESTION_OFFSET = 0.25
SUGGESTION_COLOUR = "#D080FFB0"        # translucent (pyqtgraph: #RRGGBBAA): the scoring reads over it
#: The second opinion's track (YASA): a dashed line this far below its stage's level.
OPINION_OFFSET = -0.25
OPINION_COLOUR = "#40C0A0B0"
#: The flag track: ticks from FLAG_LOW to FLAG_HIGH (above the artefact row).
FLAG_LOW, FLAG_HIGH = 6.2, 6.5
FLAG_COLOUR, FLAG_REVIEWED_COLOUR = "#FF9020", "#707070"
_TICKS = [(6.0, "A"), (5.0, "W"), (4.0, "R"), (3.0, "N1"), (2.0, "N2"), (1.0, "N3")]
#: Narrower epochs than this (pixels) get a mark per scored epoch; the mark's size in pixels.
MIN_EPOCH_PX = 4.0
SCORED_MARK_PX = 9
#: Drawing order: the technologist's scoring over the model's and the second opinion's lines.
Z_OPINION, Z_SUGGESTION, Z_SCORED, Z_FLAGS, Z_CURSOR = 19, 20, 30, 45, 50


class CursorZoomViewBox(pg.ViewBox):
    """A ViewBox whose wheel zooms the time axis about ``cursor_x`` (seconds) when it is set
    and in view, about the mouse otherwise (pyqtgraph's own behaviour: one has panned away
    from the cursor to look elsewhere)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cursor_x: float | None = None

    def wheelEvent(self, ev, axis=None):  # noqa: N802 (Qt API)
        low, high = self.viewRange()[0]
        if (self.cursor_x is None or not low <= self.cursor_x <= high
                or not self.state["mouseEnabled"][0] or axis == 1):
            super().wheelEvent(ev, axis)
            return
        scale = 1.02 ** (ev.delta() * self.state["wheelScaleFactor"])
        self._resetTarget()
        self.scaleBy([scale, None], Point(self.cursor_x, 0.0))
        ev.accept()
        self.sigRangeChangedManually.emit([True, False])


class HypnogramView(QWidget):
    """Shows the night's stages; ``epoch_clicked(int)`` when the technologist clicks an epoch."""

    epoch_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.axis = ClockAxis(None)
        self.viewbox = CursorZoomViewBox()
        self.plot_widget = pg.PlotWidget(viewBox=self.viewbox, axisItems={"bottom": self.axis},
                                         background=BACKGROUND)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget)
        self.plot = self.plot_widget.getPlotItem()
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=True, y=False)   # wheel / drag zoom and pan the time axis only
        self.plot.getAxis("left").setTicks([_TICKS])
        self.plot.getAxis("left").setWidth(30)
        self.plot.setYRange(0.5, 6.5, padding=0)
        self.step_line = pg.PlotCurveItem(pen=pg.mkPen("#707070", width=1), connect="finite")
        self.step_line.setZValue(Z_SCORED)
        self.plot.addItem(self.step_line)
        self.stage_curves: dict[Stage, pg.PlotCurveItem] = {}
        for stage, colour in STAGE_COLOURS.items():
            curve = pg.PlotCurveItem(pen=pg.mkPen(colour, width=5 if stage is Stage.R else 4),
                                     connect="pairs")
            curve.setZValue(Z_SCORED)
            self.stage_curves[stage] = curve
            self.plot.addItem(curve)
        self.scored_marks = pg.ScatterPlotItem(symbol="s", size=SCORED_MARK_PX,
                                               pen=pg.mkPen(BACKGROUND, width=1), pxMode=True)
        self.scored_marks.setZValue(Z_SCORED + 1)
        self.plot.addItem(self.scored_marks)
        self._brushes = {stage: pg.mkBrush(colour) for stage, colour in STAGE_COLOURS.items()}
        self.suggestion_line = pg.PlotCurveItem(
            pen=pg.mkPen(SUGGESTION_COLOUR, width=1.5, style=Qt.PenStyle.DotLine),
            connect="finite")
        self.suggestion_line.setZValue(Z_SUGGESTION)
        self.plot.addItem(self.suggestion_line)
        self.opinion_line = pg.PlotCurveItem(
            pen=pg.mkPen(OPINION_COLOUR, width=1.5, style=Qt.PenStyle.DashLine), connect="finite")
        self.opinion_line.setZValue(Z_OPINION)
        self.plot.addItem(self.opinion_line)
        self.flag_ticks = pg.PlotCurveItem(pen=pg.mkPen(FLAG_COLOUR, width=2), connect="pairs")
        self.reviewed_ticks = pg.PlotCurveItem(pen=pg.mkPen(FLAG_REVIEWED_COLOUR, width=2),
                                               connect="pairs")
        for ticks in (self.reviewed_ticks, self.flag_ticks):
            ticks.setZValue(Z_FLAGS)
            self.plot.addItem(ticks)
        self._flagged: list[int] = []
        self._reviewed: set[int] = set()
        self.marker = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#FFFFFF", width=2))
        self.marker.setZValue(Z_CURSOR)
        self.plot.addItem(self.marker, ignoreBounds=True)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        self.viewbox.sigXRangeChanged.connect(lambda *_: self._redraw_marks())
        self.viewbox.sigResized.connect(lambda *_: self._redraw_marks())
        self._stages: list[Stage] = []
        self._levels = np.zeros(0)
        self._step_x = np.zeros(0)
        self._step_y = np.zeros(0)
        self._suggested: list[Stage | None] = []
        self._opinion: list[Stage | None] = []
        self._suggestion_y = np.zeros(0)
        self.current: int | None = None

    # -- data --------------------------------------------------------------------------
    @property
    def n_epochs(self) -> int:
        return len(self._stages)

    def stages(self) -> list[Stage]:
        return list(self._stages)

    def set_night(self, stages: list[Stage], start: datetime | None = None) -> None:
        """Show a whole night (one Stage per 30-s epoch); resets zoom to the full night."""
        self._stages = list(stages)
        n = len(self._stages)
        self.axis.set_start(start)
        self._levels = np.array([STAGE_LEVELS.get(s, np.nan) for s in self._stages], float)
        edges = np.arange(n + 1, dtype=float) * EPOCH_SECONDS
        self._step_x = np.repeat(edges, 2)[1:-1]
        self._step_y = np.repeat(self._levels, 2)
        self._redraw_step()
        for stage in self.stage_curves:
            self._redraw_stage(stage)
        self._redraw_marks()
        self._suggested = [None] * n
        self._suggestion_y = np.full(2 * n, np.nan)
        self._redraw_suggestions()
        self.set_second_opinion({})
        self.set_flags([])
        full = max(n, 1) * EPOCH_SECONDS
        self.viewbox.setLimits(xMin=0, xMax=full, minXRange=min(full, 10 * EPOCH_SECONDS),
                               yMin=0.5, yMax=6.5)
        self.plot.setXRange(0, full, padding=0)
        if self.current is not None and n:
            self.set_current(min(self.current, n - 1))

    def clear_night(self) -> None:
        self.set_night([])
        self.current = None
        self.viewbox.cursor_x = None
        self.marker.setVisible(False)

    def set_stage(self, epoch: int, stage: Stage) -> None:
        """One epoch changed: update only the step line and the old and new stage curves."""
        old = self._stages[epoch]
        self._stages[epoch] = stage
        level = STAGE_LEVELS.get(stage, np.nan)
        self._levels[epoch] = level
        self._step_y[2 * epoch] = self._step_y[2 * epoch + 1] = level
        self._redraw_step()
        for changed in {old, stage}:
            if changed in self.stage_curves:
                self._redraw_stage(changed)
        self._redraw_marks()

    # -- the model's suggestions ---------------------------------------------------------
    def suggestions(self) -> list[Stage | None]:
        """The suggested stage per epoch (None where the model has said nothing)."""
        return list(self._suggested)

    def set_suggestions(self, suggested: dict[int, Stage | None]) -> None:
        """Show the model's suggestions (epoch -> stage); every other epoch has none."""
        n = self.n_epochs
        self._suggested = [None] * n
        self._suggestion_y = np.full(2 * n, np.nan)
        for epoch, stage in suggested.items():
            if 0 <= epoch < n:
                self._put_suggestion(epoch, stage)
        self._redraw_suggestions()

    def set_suggestion(self, epoch: int, stage: Stage | None) -> None:
        """One suggestion arrived (or changed): update the layer in place."""
        if 0 <= epoch < self.n_epochs:
            self._put_suggestion(epoch, stage)
            self._redraw_suggestions()

    def clear_suggestions(self) -> None:
        self.set_suggestions({})

    def _put_suggestion(self, epoch: int, stage: Stage | None) -> None:
        self._suggested[epoch] = stage
        level = STAGE_LEVELS.get(stage, np.nan) if stage is not None else np.nan
        self._suggestion_y[2 * epoch] = self._suggestion_y[2 * epoch + 1] = \
            level + SUGGESTION_OFFSET

    def _redraw_suggestions(self) -> None:
        if np.isnan(self._suggestion_y).all():
            self.suggestion_line.setData([], [])
        else:
            self.suggestion_line.setData(self._step_x, self._suggestion_y)

    # -- the second opinion --------------------------------------------------------------
    def second_opinion(self) -> list[Stage | None]:
        """The second opinion's stage per epoch on its track (None where it has none)."""
        return list(self._opinion)

    def set_second_opinion(self, stages: dict[int, Stage]) -> None:
        """Show the stager's stages (epoch -> stage) as their own dashed track."""
        n = self.n_epochs
        self._opinion = [None] * n
        y = np.full(2 * n, np.nan)
        for epoch, stage in stages.items():
            if 0 <= epoch < n:
                self._opinion[epoch] = stage
                y[2 * epoch] = y[2 * epoch + 1] = STAGE_LEVELS.get(stage, np.nan) + OPINION_OFFSET
        if np.isnan(y).all():
            self.opinion_line.setData([], [])
        else:
            self.opinion_line.setData(self._step_x, y)

    # -- review flags --------------------------------------------------------------------
    def flagged(self) -> list[int]:
        """Epochs marked as flagged for review."""
        return list(self._flagged)

    def reviewed_flags(self) -> set[int]:
        """Flagged epochs drawn as reviewed."""
        return set(self._reviewed)

    def set_flags(self, flagged: Iterable[int], reviewed: Iterable[int] = ()) -> None:
        """Mark the flagged epochs (those in ``reviewed`` grey, the rest orange)."""
        n = self.n_epochs
        self._flagged = sorted({int(e) for e in flagged if 0 <= int(e) < n})
        self._reviewed = {int(e) for e in reviewed} & set(self._flagged)
        for ticks, epochs in ((self.flag_ticks, [e for e in self._flagged
                                                 if e not in self._reviewed]),
                              (self.reviewed_ticks, sorted(self._reviewed))):
            if not epochs:
                ticks.setData([], [])
                continue
            x = np.repeat((np.asarray(epochs, float) + 0.5) * EPOCH_SECONDS, 2)
            y = np.tile([FLAG_LOW, FLAG_HIGH], len(epochs))
            ticks.setData(x, y)

    def set_current(self, epoch: int) -> None:
        self.current = int(epoch)
        self.marker.setVisible(True)
        self.marker.setValue((self.current + 0.5) * EPOCH_SECONDS)
        self.viewbox.cursor_x = (self.current + 0.5) * EPOCH_SECONDS
        low, high = self.viewbox.viewRange()[0]
        centre = (self.current + 0.5) * EPOCH_SECONDS
        if not low <= centre <= high:   # zoomed in and the epoch left the view: follow it
            half = (high - low) / 2
            self.plot.setXRange(centre - half, centre + half, padding=0)

    def epoch_width_px(self) -> float:
        """How wide one epoch is drawn now, in pixels.

        Returns
        -------
        float
        """
        low, high = self.viewbox.viewRange()[0]
        span = max(high - low, 1e-9)
        return self.viewbox.width() * EPOCH_SECONDS / span

    def scored_marks_shown(self) -> list[int]:
        """The epochs that have a scored mark now (none when epochs are wide enough).

        Returns
        -------
        list of int
        """
        x, _ = self.scored_marks.getData()
        return [int(v // EPOCH_SECONDS) for v in (x if x is not None else [])]

    def _redraw_marks(self) -> None:
        if not self.n_epochs or self.epoch_width_px() >= MIN_EPOCH_PX:
            self.scored_marks.setData([], [])
            return
        scored = np.flatnonzero(~np.isnan(self._levels))
        self.scored_marks.setData(x=(scored + 0.5) * EPOCH_SECONDS, y=self._levels[scored],
                                  brush=[self._brushes[self._stages[e]] for e in scored])

    def _redraw_step(self) -> None:
        self.step_line.setData(self._step_x, self._step_y)

    def _redraw_stage(self, stage: Stage) -> None:
        level = STAGE_LEVELS[stage]
        index = np.flatnonzero(self._levels == level)
        x = np.column_stack([index, index + 1]).ravel() * EPOCH_SECONDS
        y = np.full(x.size, level)
        self.stage_curves[stage].setData(x, y)

    # -- mouse -------------------------------------------------------------------------
    def epoch_at_scene(self, scene_pos) -> int | None:
        if not self.n_epochs or not self.viewbox.sceneBoundingRect().contains(scene_pos):
            return None
        x = self.viewbox.mapSceneToView(scene_pos).x()
        return max(0, min(self.n_epochs - 1, int(math.floor(x / EPOCH_SECONDS))))

    def scene_pos_of_epoch(self, epoch: int, level: float = 3.0):
        """Scene position of the middle of ``epoch`` (for tests and tooltips)."""
        return self.viewbox.mapViewToScene(QPointF((epoch + 0.5) * EPOCH_SECONDS, level))

    def _on_click(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        epoch = self.epoch_at_scene(event.scenePos())
        if epoch is not None:
            event.accept()
            self.epoch_clicked.emit(epoch)
