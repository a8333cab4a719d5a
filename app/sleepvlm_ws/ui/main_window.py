"""MainWindow: the waveform above, the hypnogram below, an AI panel on the right.

The window presents a ReviewSession and forwards the technologist's keys and clicks to it;
every scoring rule lives in the core. The model features (load a pack, score the night, accept
or override a suggestion) are wired in ``ai_review.AIReview``.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QDialog, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QSplitter,
                               QVBoxLayout, QWidget)

from ..core.base.stages import Stage
from ..core.review.session import ReviewSession
from ..core.signals.montage import Montage
from ..core.trust.evidence.epoch_cache import KIND_TITLES
from ..errors import InputError
from .agreement_dialog import choose_report, open_agreement
from .ai_panel import NO_MODEL_TEXT  # noqa: F401 - re-exported (tests, app)
from .ai_review import AIReview
from .exporting import DEFAULT_FORMAT, export_filters, export_session, export_target
from .hypnogram_view import HypnogramView
from .loader import RecordingLoader
from .montage_dialog import MontageDialog
from .plot_items import clock_text
from .recent import add_recent, load_recent
from .review_actions import ReviewActions
from .scorers_dialog import open_scorers
from .statistics_dialog import open_statistics
from .waveform_view import WaveformView

APP_NAME = "SleepVLM Workstation"
#: Scoring keys as in the tools technologists know (each scores the epoch and advances).
SCORING_KEYS: dict[Stage, tuple[str, ...]] = {
    Stage.W: ("W", "0"), Stage.N1: ("1",), Stage.N2: ("2",), Stage.N3: ("3",),
    Stage.R: ("R", "5"), Stage.ARTEFACT: ("A",),
}
RECORDING_FILTER = "Polysomnography (*.edf *.EDF *.bdf *.BDF *.rec);;All files (*)"


def status_text(session: ReviewSession) -> str:
    """``Epoch 123 / 960 · 23:41:30 · N2 · scored 500/960 (52%)`` (+ the montage note)."""
    epoch, n = session.epoch, session.n_epochs
    scored, total = session.progress()
    percent = round(100 * scored / total) if total else 0
    clock = clock_text(session.recording.start, session.epoch_onset_s())
    stage = session.stage()
    text = (f"Epoch {epoch + 1} / {n} · {clock} · {stage.label} · "
            f"scored {scored}/{total} ({percent}%)")
    missing = session.montage.missing
    if missing:
        text += f" · reduced montage: {', '.join(missing)} missing"
    return text


class MainWindow(QMainWindow):
    def __init__(self, scorer: str = "technologist", parent: QWidget | None = None):
        super().__init__(parent)
        self.scorer = scorer
        self.session: ReviewSession | None = None
        self.scorers_dialog = None
        self.montage_dialog: MontageDialog | None = None
        self.shortcuts_dialog: QDialog | None = None
        self.export_dialog: QFileDialog | None = None
        self._closing = False
        #: Unattended runs replace the error dialog with this ``(title, message)`` callable.
        self.error_reporter = None
        self.waveform = WaveformView()
        self.hypnogram = HypnogramView()
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.waveform)
        splitter.addWidget(self.hypnogram)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        self.setCentralWidget(splitter)
        self.ai = AIReview(self)
        self.ai_panel = self.ai.panel
        self.ai_dock = QDockWidget("AI suggestion", self)
        self.ai_dock.setObjectName("ai_suggestion")
        self.ai_dock.setWidget(self.ai_panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.ai_dock)
        self.review = ReviewActions(self)
        self.status_label = QLabel("No recording open")
        self.statusBar().addWidget(self.status_label, 1)
        self.loader = RecordingLoader(self)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)
        self.hypnogram.epoch_clicked.connect(self._on_hypnogram_click)
        self.menu_actions: dict[str, QAction] = {}
        self._build_menus()
        self.ai.install_status_widgets(self.statusBar())
        self._update_enabled()
        self._update_title()
        self.resize(1400, 900)

    # -- menus -------------------------------------------------------------------------
    def _action(self, menu, name: str, text: str, slot, shortcuts=(), checkable=False,
                checked=False) -> QAction:
        action = QAction(text, self)
        if shortcuts:
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if checkable:
            action.setCheckable(True)
            action.setChecked(checked)
            action.toggled.connect(slot)
        else:
            action.triggered.connect(lambda _=False: slot())
        menu.addAction(action)
        self.addAction(action)   # keys work whatever child has focus
        self.menu_actions[name] = action
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "open", "&Open recording…", self.choose_recording,
                     [QKeySequence.StandardKey.Open])
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._action(file_menu, "export", "&Export hypnogram…", self.choose_export)
        self._action(file_menu, "report", "&Report…", lambda: choose_report(self))
        self._action(file_menu, "report_deid", "De-identified re&port…",
                     lambda: choose_report(self, True))
        self._action(file_menu, "close", "&Close", self.close_session, ["Ctrl+W"])
        file_menu.addSeparator()
        self._action(file_menu, "quit", "&Quit", self.close, ["Ctrl+Q"])

        score_menu = bar.addMenu("S&core")
        for stage, keys in SCORING_KEYS.items():
            self._action(score_menu, f"score_{stage.value}", f"Score {stage.label}",
                         lambda s=stage: self.score(s), keys)

        nav = bar.addMenu("&Navigate")
        self._action(nav, "previous", "Previous epoch", lambda: self.step(-1), ["Left", "PgUp"])
        self._action(nav, "next", "Next epoch", lambda: self.step(1), ["Right", "PgDown"])
        self._action(nav, "first", "First epoch", lambda: self.go_to(0), ["Home"])
        self._action(nav, "last", "Last epoch", lambda: self.go_to(10**9), ["End"])

        score_menu.addSeparator()
        self._action(score_menu, "accept_ai", "&Accept the AI suggestion", self.ai.accept,
                     ["Return", "Enter"])
        self._action(score_menu, "override_ai", "&Override the AI suggestion (then a stage key)",
                     self.ai.arm_override, ["O"])
        self._action(score_menu, "cancel_override", "Cancel the override", self.ai.cancel_override,
                     ["Esc"])

        study_menu = bar.addMenu("&Study")
        self._action(study_menu, "montage", "&Montage…", self.open_montage_dialog)
        self._action(study_menu, "undo", "&Undo", self.undo, [QKeySequence.StandardKey.Undo])
        self._action(study_menu, "agreement", "&Agreement with the AI…", lambda: open_agreement(self))
        self._action(study_menu, "statistics", "Sleep &statistics…", lambda: open_statistics(self))
        self._action(study_menu, "scorers", "S&corers: agreement and consensus…",
                     lambda: open_scorers(self))

        view = bar.addMenu("&View")
        self._action(view, "gain_up", "Larger waves (more sensitive)",
                     lambda: self.waveform.zoom_amplitude(+1), ["+", "="])
        self._action(view, "gain_down", "Smaller waves (less sensitive)",
                     lambda: self.waveform.zoom_amplitude(-1), ["-"])
        view.addSeparator()
        self._action(view, "filters", "Standard display filters (EEG/EOG 0.3–35 Hz, chin 10–100 Hz)",
                     self.waveform.set_filters_on, checkable=True, checked=True)
        notch_menu = view.addMenu("Mains notch")
        group = QActionGroup(self)
        for value in (None, 50.0, 60.0):
            name = "notch_off" if value is None else f"notch_{value:g}"
            action = self._action(notch_menu, name, "Off" if value is None else f"{value:g} Hz",
                                  lambda on, v=value: on and self.waveform.set_notch(v),
                                  checkable=True, checked=value is None)
            group.addAction(action)
        self._action(view, "ruler", "Slow-wave ruler (75 µV on F4-M1)",
                     self.waveform.set_ruler_visible, checkable=True, checked=True)
        self._action(view, "other_channels", "Show other channels",
                     self.waveform.set_show_other_channels, checkable=True)
        overlay_menu = view.addMenu("Evidence overlays")
        for kind, title in KIND_TITLES.items():
            self._action(overlay_menu, f"overlay_{kind}", title,
                         lambda on, k=kind: self.waveform.overlays.set_visible(k, on),
                         checkable=True, checked=True)
        view.addAction(self.ai_dock.toggleViewAction())

        model_menu = bar.addMenu("&Model")
        self._action(model_menu, "load_model", "&Load model pack…", self.ai.choose_pack)
        self._action(model_menu, "score_night", "&Score night", self.ai.score_night)
        self._action(model_menu, "pause_run", "&Pause", self.ai.set_paused, checkable=True)
        self._action(model_menu, "cancel_run", "&Cancel", self.ai.cancel_run)
        model_menu.addSeparator()
        self._action(model_menu, "explain", "&Explain this epoch", self.ai.explain, ["E"])
        model_menu.addSeparator()
        self._action(model_menu, "model_settings", "S&ettings…", self.ai.open_settings)

        review = bar.addMenu("&Review")
        self._action(review, "next_flagged", "&Next flagged epoch",
                     lambda: self.review.go_flagged(+1), ["F", "]"])
        self._action(review, "previous_flagged", "&Previous flagged epoch",
                     lambda: self.review.go_flagged(-1), ["Shift+F", "["])
        self._action(review, "least_confident", "&Least confident flagged epoch (not reviewed)",
                     self.review.go_least_confident, ["L"])
        self._action(review, "highest_priority", "&Highest-priority flagged epoch (not reviewed)",
                     self.review.go_highest_priority, ["P"])
        review.addSeparator()
        self._action(review, "second_opinion", "Run &second opinion (YASA)",
                     self.review.run_second_opinion)
        self._action(review, "accept_unflagged", "&Accept all unflagged…",
                     self.review.ask_accept_unflagged)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "shortcuts", "&Keyboard shortcuts", self.show_shortcuts, ["F1"])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        entries = load_recent()
        if not entries:
            self.recent_menu.addAction("(empty)").setEnabled(False)
        for entry in entries:
            action = self.recent_menu.addAction(entry["recording"])
            action.triggered.connect(
                lambda _=False, e=entry: self.open_recording(e["recording"], e["study"]))

    def _update_enabled(self) -> None:
        has = self.session is not None
        for name, action in self.menu_actions.items():
            if name.startswith("score_") or name in ("previous", "next", "first", "last",
                                                     "undo", "montage", "export", "close",
                                                     "report", "report_deid", "agreement",
                                                     "statistics", "scorers"):
                action.setEnabled(has)
        self.ai.update_actions()
        self.review.update_actions()

    def _update_title(self) -> None:
        if self.session is None:
            self.setWindowTitle(APP_NAME)
        else:
            name = self.session.recording.path.name
            self.setWindowTitle(f"{name} — scorer: {self.session.scorer} — {APP_NAME}")

    def _update_status(self) -> None:
        text = "No recording open" if self.session is None else status_text(self.session)
        review = self.review.status_text() if self.session is not None else ""
        self.status_label.setText(f"{text} · {review}" if review else text)

    # -- opening and closing -----------------------------------------------------------
    def recording_folder(self) -> str:
        """Where File > Open starts: the folder of the last recording opened (else the home
        folder)."""
        for entry in load_recent():
            folder = Path(entry["recording"]).parent
            if folder.is_dir():
                return str(folder)
        return str(Path.home())

    def choose_recording(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open recording", self.recording_folder(),
                                              RECORDING_FILTER)
        if path:
            self.open_recording(path)

    def open_recording(self, recording: str | Path, study: str | Path | None = None) -> bool:
        """Load ``recording`` and its study in the background. The open study stays as it is
        (its AI run goes on) until the new one has opened: a file that cannot be opened
        changes nothing of the current study."""
        if self.loader.busy:
            self.statusBar().showMessage("Still opening the previous recording…", 3000)
            return False
        self.status_label.setText(f"Opening {Path(recording).name}…")
        return self.loader.load(recording, study, self.scorer)

    def _on_loaded(self, session: ReviewSession) -> None:
        if self._closing:
            session.close()
            return
        self.close_session()          # only now: the new recording and its study are open
        self.session = session
        session.epoch_changed.connect(self._on_epoch_changed)
        session.stage_changed.connect(self._on_stage_changed)
        session.montage_changed.connect(self._on_montage_changed)
        self.waveform.set_source(session.recording, session.montage)
        self.hypnogram.set_night(session.stages(), session.recording.start)
        self._on_epoch_changed(session.epoch)
        add_recent(session.recording.path, session.study.path)
        self.ai.session_opened(session)
        self.review.session_opened()
        self._update_enabled()
        self._update_title()

    def _on_failed(self, message: str) -> None:
        self._update_status()
        self.show_error("Cannot open recording", message)

    def close_session(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        if self.scorers_dialog is not None:      # it shows the study being closed
            self.scorers_dialog.close()
            self.scorers_dialog = None
        session.epoch_changed.disconnect(self._on_epoch_changed)
        session.stage_changed.disconnect(self._on_stage_changed)
        session.montage_changed.disconnect(self._on_montage_changed)
        self.ai.session_closing()
        self.review.session_closing()
        self.waveform.set_source(None, None)
        self.hypnogram.clear_night()
        try:
            session.close()
        except InputError as error:
            self.show_error("Closing the study", str(error))
        self._update_enabled()
        self._update_title()
        self._update_status()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt API)
        self._closing = True
        self.loader.wait()                             # a load under way finishes first,
        QCoreApplication.sendPostedEvents(self.loader)  # and its session is closed at once
        self.close_session()
        self.ai.shutdown()                             # the model's thread ends with the window
        self.waveform.evidence.shutdown()              # and so does the evidence worker
        self.review.shutdown()                         # so does a second-opinion run
        super().closeEvent(event)

    def show_error(self, title: str, message: str) -> None:
        """A one-line error for the user: a critical message box (never a traceback)."""
        if self.error_reporter is not None:
            self.error_reporter(title, message)
        else:
            QMessageBox.critical(self, title, message)

    # -- session events ----------------------------------------------------------------
    def _on_epoch_changed(self, epoch: int) -> None:
        self.waveform.show_epoch(epoch)
        self.hypnogram.set_current(epoch)
        self._update_status()
        if self.session is not None:
            self.ai.epoch_changed(epoch)

    def _on_stage_changed(self, epoch: int, stage: Stage) -> None:
        self.hypnogram.set_stage(epoch, stage)
        self.review.stage_changed(epoch)
        self.ai.stage_changed(epoch)
        self._update_status()

    def _on_montage_changed(self, montage: Montage) -> None:
        self.waveform.set_montage(montage)
        self._update_status()

    def _on_hypnogram_click(self, epoch: int) -> None:
        self.go_to(epoch)

    # -- user actions (forwarded to the session) ---------------------------------------
    def _forward(self, call, *args):
        if self.session is None:
            return None
        try:
            return call(*args)
        except InputError as error:
            self.show_error("Study", str(error))
            return None

    def score(self, stage: Stage) -> None:
        if self.ai.override_armed:       # O, then a stage key: the technologist's stage
            self._forward(lambda: self.ai.override_with(stage))
            return
        self._forward(lambda: self.session.score(stage))

    def step(self, delta: int) -> None:
        self._forward(lambda: self.session.step(delta))

    def go_to(self, epoch: int) -> None:
        self._forward(lambda: self.session.go_to(epoch))

    def undo(self) -> None:
        if self.session is not None and self._forward(self.session.undo) is None:
            self.statusBar().showMessage("Nothing to undo", 3000)

    def open_montage_dialog(self) -> MontageDialog | None:
        """Open the (window-modal, non-blocking) montage dialog; OK applies it to the study."""
        if self.session is None:
            return None
        labels = [c.label for c in self.session.recording.channels]
        dialog = MontageDialog(labels, self.session.montage, self)
        dialog.accepted.connect(lambda: self.set_montage(dialog.montage()))
        self.montage_dialog = dialog
        dialog.open()
        return dialog

    def set_montage(self, montage: Montage) -> None:
        self._forward(lambda: self.session.set_montage(montage))

    def load_model(self, pack_dir: str | Path) -> bool:
        """Load a model pack in the background (verified first; errors go to the error dialog)."""
        return self.ai.load_model(pack_dir)

    def choose_export(self) -> QFileDialog | None:
        """The (window-modal) save dialog; the suffix typed decides the format, else the
        "Files of type" filter does (``exporting.export_target``)."""
        if self.session is None:
            return None
        filters = export_filters()
        default = str(self.session.recording.path.with_suffix(f".hypnogram.{DEFAULT_FORMAT}"))
        preferred = next((f for f in filters if f.endswith(f"(*.{DEFAULT_FORMAT})")), filters[0])
        dialog = QFileDialog(self, "Export hypnogram", default, ";;".join(filters))
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.selectNameFilter(preferred)
        dialog.selectFile(default)
        dialog.fileSelected.connect(
            lambda path: self.export_to(*export_target(path, dialog.selectedNameFilter())))
        self.export_dialog = dialog
        dialog.open()
        return dialog

    def export_to(self, path: str | Path, fmt: str) -> Path | None:
        """Export the technologist's hypnogram; errors go to the error dialog."""
        if self.session is None:
            return None
        try:
            written = export_session(self.session, fmt, path)
        except InputError as error:
            self.show_error("Export hypnogram", str(error))
            return None
        self.statusBar().showMessage(f"Exported {written}", 5000)
        return written

    def show_shortcuts(self) -> QDialog:
        lines = ["<table cellspacing='6'>"]
        for action in self.menu_actions.values():
            keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText)
                             for s in action.shortcuts())
            if keys:
                lines.append(f"<tr><td><b>{keys}</b></td><td>{action.text().replace('&', '')}"
                             "</td></tr>")
        lines.append("</table>")
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        layout = QVBoxLayout(dialog)
        layout.addWidget(QLabel("".join(lines)))
        self.shortcuts_dialog = dialog
        dialog.show()
        return dialog
