"""WaveformView: the current epoch with 15 s of context on each side, one row per montage role.

The view only presents: it reads the shown window from the Recording (through the montage),
applies the display filter (core.signals.display_filters) and draws; the detectors' findings are drawn
as bands by ``evidence_overlays`` (measured off the GUI thread). Paging reuses every plot item
and only calls ``setData`` / ``setXRange``; pyqtgraph downsamples to the screen width.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCursor
from PySide6.QtWidgets import QMenu, QVBoxLayout, QWidget

from ..core.base.stages import EPOCH_SECONDS
from ..core.signals.display_filters import (FILTER_PAD_S, HIGHPASS_CHOICES, LOWPASS_CHOICES, DisplayFilter,
                                            apply_display_filter, standard_filter)
from ..core.signals.montage import Montage
from ..core.signals.recording import Recording
from ..errors import InputError
from .amplitude_tools import Caliper, SlowWaveRuler
from .evidence_overlays import EvidenceOverlays, EvidenceService
from .plot_items import BACKGROUND, ClockAxis, SecondGrid
from .waveform_rows import GAIN_STEPS_UV, OTHER_COLOUR, ROLE_COLOURS, Row, autoscale, next_gain, plan_rows

CONTEXT_S = EPOCH_SECONDS / 2      # half an epoch either side
LABEL_WIDTH = 130


class WaveformView(QWidget):
    """Shows ``[onset - 15 s, onset + 45 s]`` of the current epoch for every row."""

    rows_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground(BACKGROUND)
        self.canvas.ci.layout.setSpacing(0)
        self.canvas.ci.setContentsMargins(2, 2, 8, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.canvas.scene().sigMouseClicked.connect(self._on_scene_click)
        self.recording: Recording | None = None
        self.montage: Montage | None = None
        self.rows: list[Row] = []
        self.epoch: int | None = None
        self.window_s: tuple[float, float] = (0.0, 2 * EPOCH_SECONDS)
        self.show_other_channels = False
        self.filters_on = True
        self.notch_hz: float | None = None
        self.ruler: SlowWaveRuler | None = None
        self.ruler_visible = True
        self.caliper = Caliper()
        #: Detector findings per epoch (also read by the AI panel) and their bands on the rows.
        self.evidence = EvidenceService(self)
        self.overlays = EvidenceOverlays(self, self.evidence)

    # -- source ------------------------------------------------------------------------
    def set_source(self, recording: Recording | None, montage: Montage | None) -> None:
        """Show ``recording`` through ``montage`` (None: show nothing)."""
        self.recording, self.montage = recording, montage
        self.evidence.set_source(recording, montage)
        self.epoch = None
        self._rebuild()

    def set_montage(self, montage: Montage) -> None:
        self.montage = montage
        self.evidence.set_source(self.recording, montage)
        self._rebuild()
        self._refresh()

    def set_show_other_channels(self, show: bool) -> None:
        self.show_other_channels = bool(show)
        self._rebuild()
        self._refresh()

    def row(self, key: str) -> Row:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(key)

    # -- rows --------------------------------------------------------------------------
    def _rebuild(self) -> None:
        old = {row.key: row for row in self.rows}
        self.caliper.detach()
        self.canvas.clear()
        self.rows, self.ruler = [], None
        if self.recording is None or self.montage is None:
            self.overlays.rows_rebuilt()
            self.rows_changed.emit()
            return
        rows = plan_rows(self.recording, self.montage, show_other_channels=self.show_other_channels,
                         notch_hz=self.notch_hz, filters_on=self.filters_on)
        for index, row in enumerate(rows):
            previous = old.get(row.key)
            if previous is not None and previous.source_name == row.source_name:
                row.gain_uv, row.flt, row.autoscale = (previous.gain_uv, previous.flt,
                                                       previous.autoscale)
            self._build_row(row, last=index == len(rows) - 1)
            self.rows.append(row)
        first = self.rows[0].plot
        for row in self.rows[1:]:
            row.plot.setXLink(first)
        f4 = self.rows[0]
        if not f4.missing:
            self.ruler = SlowWaveRuler(f4.plot)
            self.ruler.setVisible(self.ruler_visible)
        self.overlays.rows_rebuilt()
        self.rows_changed.emit()

    def _build_row(self, row: Row, *, last: bool) -> None:
        axis = {"bottom": ClockAxis(self.recording.start)} if last else {}
        label = self.canvas.addLabel(row.label_html(), justify="left", size="8pt")
        plot = self.canvas.addPlot(axisItems=axis)
        self.canvas.nextRow()
        plot.hideAxis("left")
        if not last:
            plot.hideAxis("bottom")
        plot.hideButtons()
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        plot.disableAutoRange()
        plot.getViewBox().setDefaultPadding(0.0)
        grid = SecondGrid()
        plot.addItem(grid, ignoreBounds=True)
        colour = ROLE_COLOURS.get(row.key, OTHER_COLOUR)
        curve = pg.PlotDataItem(pen=pg.mkPen(colour, width=1), connect="finite",
                                autoDownsample=True, downsampleMethod="peak", clipToView=True)
        plot.addItem(curve)
        row.label, row.plot, row.curve, row.grid = label, plot, curve, grid
        self._apply_gain(row)
        self.canvas.ci.layout.setColumnFixedWidth(0, LABEL_WIDTH)

    def _apply_gain(self, row: Row, centre: float = 0.0) -> None:
        half = row.gain_uv / 2.0
        row.plot.setYRange(centre - half, centre + half, padding=0)
        row.label.setText(row.label_html())

    # -- paging ------------------------------------------------------------------------
    def show_epoch(self, epoch: int) -> None:
        """Page to ``epoch``: fetch the 60-s window (plus filter padding) and redraw every row."""
        self.epoch = int(epoch)
        self._refresh()

    def _refresh(self) -> None:
        if self.recording is None or self.epoch is None or not self.rows:
            return
        onset = self.epoch * EPOCH_SECONDS
        start, stop = onset - CONTEXT_S, onset + EPOCH_SECONDS + CONTEXT_S
        self.window_s = (start, stop)
        for row in self.rows:
            self._draw_row(row, start, stop)
            row.grid.set_epoch_span(onset, onset + EPOCH_SECONDS)
        self.rows[0].plot.setXRange(start, stop, padding=0)
        self.caliper.detach()
        self.overlays.window_changed()

    def _draw_row(self, row: Row, start: float, stop: float) -> None:
        if row.missing:
            row.curve.setData([], [])
            return
        x, y = self.row_samples(row, start, stop)
        row.curve.setData(x, y)
        if row.autoscale and y.size:
            row.gain_uv, centre = autoscale(y)
            row.autoscale = False
            self._apply_gain(row, centre)

    def row_samples(self, row: Row, start: float, stop: float) -> tuple[np.ndarray, np.ndarray]:
        """Times (s from recording start) and display-filtered values of ``row`` in [start, stop]."""
        duration = float(self.recording.duration_s)
        pad = FILTER_PAD_S if row.flt.is_active else 0.0
        fetch_start = max(0.0, start - pad)
        fetch_stop = min(duration, stop + pad)
        empty = np.zeros(0), np.zeros(0, np.float32)
        if fetch_stop <= fetch_start:
            return empty
        try:
            samples, fs = row.fetch(self.recording, fetch_start, fetch_stop)
        except InputError as error:
            if row.error != error.problem:
                row.error = error.problem
                row.label.setText(row.label_html())
            return empty
        if row.error:
            row.error = None
            row.label.setText(row.label_html())
        samples = apply_display_filter(samples, fs, row.flt)
        first = int(round(fetch_start * fs))   # Recording.read's first sample
        times = (first + np.arange(samples.size)) / fs
        keep = (times >= start - 1e-9) & (times < stop)
        return times[keep], samples[keep]

    # -- gain and filters --------------------------------------------------------------
    def set_gain(self, key: str, gain_uv: float) -> None:
        row = self.row(key)
        row.gain_uv = float(gain_uv)
        row.autoscale = False
        self._apply_gain(row, self._centre(row))

    def zoom_amplitude(self, steps: int, key: str | None = None) -> None:
        """Positive ``steps`` enlarge the waves (fewer uV per row); all rows unless ``key``."""
        for row in self.rows if key is None else [self.row(key)]:
            if not row.missing:
                row.gain_uv = next_gain(row.gain_uv, steps)
                self._apply_gain(row, self._centre(row))

    def _centre(self, row: Row) -> float:
        low, high = row.plot.getViewBox().viewRange()[1]
        return (low + high) / 2.0

    def set_filter(self, key: str, flt: DisplayFilter) -> None:
        row = self.row(key)
        row.flt = flt
        row.label.setText(row.label_html())
        if self.epoch is not None:
            self._draw_row(row, *self.window_s)

    def set_filters_on(self, on: bool) -> None:
        """Standard review filters (EEG/EOG 0.3–35 Hz, chin 10–100 Hz) on, or raw signal."""
        self.filters_on = bool(on)
        for row in self.rows:
            if row.key in ROLE_COLOURS:
                row.flt = (standard_filter(row.kind, self.notch_hz) if on
                           else DisplayFilter(notch_hz=self.notch_hz))
                row.label.setText(row.label_html())
        self._refresh()

    def set_notch(self, notch_hz: float | None) -> None:
        self.notch_hz = notch_hz
        for row in self.rows:
            if row.unit == "µV":
                row.flt = row.flt.with_notch(notch_hz)
                row.label.setText(row.label_html())
        self._refresh()

    def set_ruler_visible(self, visible: bool) -> None:
        self.ruler_visible = bool(visible)
        if self.ruler is not None:
            self.ruler.setVisible(self.ruler_visible)

    # -- mouse -------------------------------------------------------------------------
    def row_at(self, scene_pos) -> Row | None:
        for row in self.rows:
            if (row.plot.sceneBoundingRect().contains(scene_pos)
                    or row.label.sceneBoundingRect().contains(scene_pos)):
                return row
        return None

    def _on_scene_click(self, event) -> None:
        row = self.row_at(event.scenePos())
        if row is None or row.missing:
            return
        if event.button() == Qt.MouseButton.RightButton:
            event.accept()
            self.row_menu(row).exec(QCursor.pos())
        elif event.button() == Qt.MouseButton.LeftButton:
            point = row.plot.getViewBox().mapSceneToView(event.scenePos())
            self.caliper.click(row.key, row.plot, point.x(), point.y(), row.unit)

    def row_menu(self, row: Row) -> QMenu:
        """Context menu of one row: sensitivity, high-pass and low-pass."""
        menu = QMenu(self)
        gain_menu = menu.addMenu("Sensitivity (µV per row)")
        group = QActionGroup(gain_menu)
        for value in GAIN_STEPS_UV:
            action = QAction(f"{value:g} {row.unit}", gain_menu, checkable=True)
            action.setChecked(abs(value - row.gain_uv) < 1e-9)
            action.triggered.connect(lambda _=False, v=value: self.set_gain(row.key, v))
            group.addAction(action)
            gain_menu.addAction(action)
        for title, choices, attr in (("High-pass", HIGHPASS_CHOICES, "highpass_hz"),
                                     ("Low-pass", LOWPASS_CHOICES, "lowpass_hz")):
            sub = menu.addMenu(title)
            group = QActionGroup(sub)
            for value in choices:
                text = "off" if value is None else f"{value:g} Hz"
                action = QAction(text, sub, checkable=True)
                action.setChecked(getattr(row.flt, attr) == value)
                action.triggered.connect(
                    lambda _=False, v=value, a=attr: self._set_filter_stage(row.key, a, v))
                group.addAction(action)
                sub.addAction(action)
        return menu

    def _set_filter_stage(self, key: str, attr: str, value: float | None) -> None:
        flt = self.row(key).flt
        values = {"highpass_hz": flt.highpass_hz, "lowpass_hz": flt.lowpass_hz,
                  "notch_hz": flt.notch_hz, attr: value}
        self.set_filter(key, DisplayFilter(**values))
