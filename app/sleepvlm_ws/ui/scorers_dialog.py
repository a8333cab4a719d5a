"""Study ▸ Scorers: several technologists' scorings of the night side by side.

``ScorersDialog`` shows what ``core.trust.study_consensus`` computes and computes nothing itself:
one hypnogram track per scorer (the study's own scoring first) and the consensus track under
them, its unsettled ties marked; Fleiss' kappa over the panel (per stage too); Cohen's kappa for
every pair and for each scorer against the consensus of the others; and the epochs where the
scorers differ as a jump list (double-click or Enter: the window goes to that epoch; the dialog
stays open beside it and follows the scoring, redrawn a moment after a stage changes). A tied
epoch (the list can show the ties only) is settled by choosing one of its tied stages (audited, with who and when). Another
technologist's scoring is imported from any hypnogram format the study imports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout,
                               QInputDialog, QLabel, QListWidget, QListWidgetItem, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ..core.base.stages import EPOCH_SECONDS, Stage
from ..core.study.scorings import ScorerError, import_scoring
from ..core.trust.report import format_kappa
from ..core.trust.study_consensus import adjudicate, compare_study_scorers, study_consensus, technologists
from ..errors import InputError
from .hypnogram_view import STAGE_LEVELS
from .plot_items import BACKGROUND, ClockAxis, clock_text

NEEDS_TWO = ("A comparison needs at least two scorings: score the night, or import another "
             "technologist's hypnogram (Import scoring…).")
TRACK_PX = 46
REDRAW_MS = 400
TIE_COLOUR = "#FF4040"
CONSENSUS = "consensus"
_TICKS = [(STAGE_LEVELS[s], s.value) for s in (Stage.W, Stage.R, Stage.N1, Stage.N2, Stage.N3)]


def _levels(stages) -> np.ndarray:
    return np.array([STAGE_LEVELS.get(s, np.nan) if s is not None and s is not Stage.ARTEFACT
                     else np.nan for s in stages], dtype=float)


def _step(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step-plot points (each epoch a flat segment, NaN gaps for unscored epochs)."""
    n = len(levels)
    x = np.repeat(np.arange(n + 1) * EPOCH_SECONDS, 2)[1:-1]
    return x.astype(float), np.repeat(levels, 2)


class ScorerTracks(pg.GraphicsLayoutWidget):
    """One small hypnogram per scorer, time axes linked, the consensus last with its ties."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setBackground(BACKGROUND)
        self.names: list[str] = []
        self.tie_marks: pg.ScatterPlotItem | None = None

    def show_scorings(self, scorings: dict, consensus_stages, unsettled: list[int], start=None) -> None:
        """Draw ``scorings`` (name -> stages) and the consensus, ties at ``unsettled``; the
        time axis in clock time from ``start`` (the recording's start, when known)."""
        self.clear()
        self.tie_marks = None
        rows = list(scorings.items()) + [(CONSENSUS, list(consensus_stages))]
        self.names = [name for name, _ in rows]
        first = None
        for i, (name, stages) in enumerate(rows):
            last = i == len(rows) - 1
            plot = self.addPlot(row=i, col=0, axisItems={"bottom": ClockAxis(start)} if last else None)
            plot.hideButtons()
            plot.setMenuEnabled(False)
            plot.setMouseEnabled(x=True, y=False)
            plot.setYRange(0.5, 5.5, padding=0)
            left = plot.getAxis("left")
            left.setTicks([_TICKS])
            left.setWidth(34)
            left.setLabel(name)
            plot.getAxis("bottom").setStyle(showValues=last)
            x, y = _step(_levels(stages))
            plot.plot(x, y, pen=pg.mkPen("#F0F0F0" if name == CONSENSUS else "#90B8E0", width=1.5),
                      connect="finite")
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            if name == CONSENSUS and unsettled:
                xs = (np.asarray(unsettled, dtype=float) + 0.5) * EPOCH_SECONDS
                self.tie_marks = pg.ScatterPlotItem(xs, np.full(len(xs), 5.2), symbol="t", size=9,
                                                    brush=pg.mkBrush(TIE_COLOUR), pen=None)
                plot.addItem(self.tie_marks)
        self.setMinimumHeight(TRACK_PX * len(rows) + 30)


class ScorersDialog(QDialog):
    """The scorers of the open study: tracks, agreement, where they differ, ties to settle."""

    def __init__(self, window, parent: QWidget | None = None):
        super().__init__(parent if parent is not None else window)
        self.window_ = window
        self.session = window.session
        self.setWindowTitle("Scorers: agreement and consensus")
        layout = QVBoxLayout(self)
        self.summary = QLabel()
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.tracks = ScorerTracks()
        layout.addWidget(self.tracks, 2)
        row = QHBoxLayout()
        left = QVBoxLayout()
        left.addWidget(QLabel("Cohen's kappa (rows: reference)"))
        self.pairs = QTableWidget(0, 0)
        self.pairs.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        left.addWidget(self.pairs)
        row.addLayout(left, 1)
        right = QVBoxLayout()
        right.addWidget(QLabel("Where they differ (double-click or Enter: go there)"))
        self.ties_only = QCheckBox("Only ties waiting for adjudication")
        self.ties_only.toggled.connect(lambda *_: self.refresh())
        right.addWidget(self.ties_only)
        self.differing = QListWidget()
        self.differing.itemActivated.connect(self._go_to_item)
        self.differing.currentItemChanged.connect(lambda *_: self._offer_tie())
        right.addWidget(self.differing)
        settle = QHBoxLayout()
        self.tie_label = QLabel("Settle a tie:")
        self.tie_stage = QComboBox()
        self.adjudicate_button = QPushButton("Adjudicate")
        self.adjudicate_button.clicked.connect(self.adjudicate_current)
        for w in (self.tie_label, self.tie_stage, self.adjudicate_button):
            settle.addWidget(w)
        right.addLayout(settle)
        row.addLayout(right, 1)
        layout.addLayout(row, 2)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.import_button = buttons.addButton("Import scoring…", QDialogButtonBox.ButtonRole.ActionRole)
        self.import_button.clicked.connect(self.choose_import)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.report = None
        self.consensus = None
        self.resize(900, 640)
        # the technologist keeps scoring with the dialog open: redraw once the keys pause
        self._redraw = QTimer(self, singleShot=True, interval=REDRAW_MS)
        self._redraw.timeout.connect(self.refresh)
        self.session.stage_changed.connect(self._on_stage_changed)
        self._attached = True
        self.finished.connect(self._detach)
        self.refresh()

    def _on_stage_changed(self, *_):
        self._redraw.start()

    def _detach(self, *_):
        """Closed: stop following the session and let the dialog go."""
        self._redraw.stop()
        if self._attached:
            self._attached = False
            self.session.stage_changed.disconnect(self._on_stage_changed)
            if self.window_.scorers_dialog is self:
                self.window_.scorers_dialog = None
            self.deleteLater()

    # -- what is shown -------------------------------------------------------------------
    @property
    def study(self):
        return self.session.study

    def refresh(self) -> None:
        """Recompute from the study and redraw everything."""
        study = self.study
        people = technologists(study)
        keep = self._current_epoch()
        self.differing.clear()
        self.pairs.setRowCount(0)
        self.pairs.setColumnCount(0)
        if len(people) < 2:
            self.report = self.consensus = None
            self.summary.setText(NEEDS_TWO)
            self.tracks.show_scorings(people, [], [])
            self._offer_tie()
            return
        try:
            self.report = compare_study_scorers(study, people=people)   # read once a redraw
            self.consensus = study_consensus(study, people)
        except (InputError, ValueError) as error:     # one line, never a traceback
            self.report = self.consensus = None
            self.summary.setText(f"Cannot compare the scorers: {error}")
            self.tracks.show_scorings(people, [], [])
            self._offer_tie()
            return
        c = self.consensus.consensus
        self.tracks.show_scorings(people, c.stages, c.unsettled, self.session.recording.start)
        f = self.report.fleiss
        per_stage = "" if f is None else " · ".join(
            f"{s.value} {format_kappa(k)}" for s, k in f.per_stage.items())
        fleiss = "—" if f is None else (f"<b>{format_kappa(f.kappa)}</b> over {f.n_epochs} epochs "
                                        f"all scored ({per_stage})")
        stale = (f"<br>{len(self.consensus.stale)} adjudication(s) no longer match a tie "
                 f"(a scoring changed since) and are not applied." if self.consensus.stale else "")
        self.summary.setText(
            f"Scorers: {', '.join(people)}<br>Fleiss' kappa: {fleiss}<br>"
            f"Epochs where they differ: {len(self.report.differing)} · ties waiting for "
            f"adjudication: {len(c.unsettled)} · adjudicated: {len(self.consensus.applied)}{stale}")
        self._fill_pairs(list(people))
        unsettled = set(c.unsettled)
        start = self.session.recording.start
        for d in self.report.differing:
            if self.ties_only.isChecked() and d.epoch not in unsettled:
                continue
            tie = " — tie" if d.epoch in unsettled else (
                f" — adjudicated {c.stages[d.epoch].value}" if d.epoch in self.consensus.applied else "")
            when = clock_text(start, d.epoch * EPOCH_SECONDS, with_seconds=True)
            number, _, rest = d.text().partition(": ")
            item = QListWidgetItem(f"{number} ({when}): {rest}{tie}")
            item.setData(Qt.ItemDataRole.UserRole, d.epoch)
            self.differing.addItem(item)
        if keep is not None:
            self._select(keep)
        self._offer_tie()

    def _fill_pairs(self, names: list[str]) -> None:
        columns = names + ["others' consensus"]
        self.pairs.setRowCount(len(names))
        self.pairs.setColumnCount(len(columns))
        self.pairs.setHorizontalHeaderLabels(columns)
        self.pairs.setVerticalHeaderLabels(names)
        for r in range(len(names)):              # "—": no epoch both scored (or no consensus)
            for c in range(len(columns)):
                if c != r:
                    self.pairs.setItem(r, c, _cell("—"))
        for (a, b), ag in self.report.pairwise.items():
            for r, c in ((a, b), (b, a)):
                self.pairs.setItem(names.index(r), columns.index(c), _cell(format_kappa(ag.kappa)))
        for name, ag in self.report.versus_others.items():
            if name in names:
                self.pairs.setItem(names.index(name), len(names), _cell(format_kappa(ag.kappa)))
        self.pairs.resizeColumnsToContents()

    def differing_epochs(self) -> list[int]:
        """The epochs of the jump list, in order (0-based)."""
        return [self.differing.item(i).data(Qt.ItemDataRole.UserRole)
                for i in range(self.differing.count())]

    # -- what the technologist does -----------------------------------------------------
    def _go_to_item(self, item: QListWidgetItem) -> None:
        self.window_.go_to(int(item.data(Qt.ItemDataRole.UserRole)))

    def _current_epoch(self) -> int | None:
        item = self.differing.currentItem()
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    def _offer_tie(self) -> None:
        """The adjudication controls offer the selected epoch's tied stages (if it is a tie)."""
        self.tie_stage.clear()
        epoch = self._current_epoch()
        tied = [] if epoch is None or self.consensus is None else \
            self.consensus.consensus.tied_stages(epoch)
        for stage in tied:
            self.tie_stage.addItem(stage.value, stage)
        enabled = bool(tied)
        self.tie_stage.setEnabled(enabled)
        self.adjudicate_button.setEnabled(enabled)
        self.tie_label.setText(f"Settle the tie at epoch {epoch + 1}:" if enabled else "Settle a tie:")

    def adjudicate_current(self) -> bool:
        """Settle the selected tie with the chosen stage (audited); False when refused."""
        epoch, stage = self._current_epoch(), self.tie_stage.currentData()
        if epoch is None or stage is None:
            return False
        try:
            adjudicate(self.study, epoch, stage, scorer=self.session.scorer)
        except InputError as error:
            self.window_.show_error("Adjudicate", str(error))
            return False
        self.refresh()
        self._select(epoch)
        return True

    def _select(self, epoch: int) -> None:
        for i in range(self.differing.count()):
            if self.differing.item(i).data(Qt.ItemDataRole.UserRole) == epoch:
                self.differing.setCurrentRow(i)
                return

    def choose_import(self) -> None:
        """Ask for a hypnogram file and the scorer's name, then import it."""
        path, _ = QFileDialog.getOpenFileName(self, "Import another technologist's scoring",
                                              str(self.study.path.parent))
        if not path:
            return
        name, ok = QInputDialog.getText(self, "Scorer", "Whose scoring is it (a name or initials)?")
        if ok:
            self.import_file(path, name)

    def import_file(self, path: str | Path, name: str) -> bool:
        """Import ``path`` as ``name``'s scoring; a one-line error (nothing stored) on failure."""
        try:
            import_scoring(self.study, path, name, actor=self.session.scorer)
        except (InputError, ScorerError) as error:
            self.window_.show_error("Import scoring", str(error))
            return False
        self.refresh()
        return True


def _cell(text: str) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
    return item


def open_scorers(window) -> ScorersDialog | None:
    """Study ▸ Scorers…: the dialog for the open study (None when no study is open)."""
    if window.session is None:
        return None
    if window.scorers_dialog is not None:
        window.scorers_dialog.close()
    dialog = ScorersDialog(window)
    window.scorers_dialog = dialog
    dialog.show()              # modeless: the jump list drives the window beside it
    return dialog
