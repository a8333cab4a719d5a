"""MainWindow end to end: a real EDF, a real study file, real widgets, real key presses."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edf_factory import DEFAULT_START, sine, write_psg_edf
from gui import open_window  # noqa: E402
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QDialogButtonBox, QLabel

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.signals.display_filters import RAW
from sleepvlm_ws.core.signals.montage import ROLES, Derivation
from sleepvlm_ws.core.study.study import MANUAL, UNDO, Study
from sleepvlm_ws.ui.exporting import export_filters
from sleepvlm_ws.ui.main_window import NO_MODEL_TEXT, MainWindow

FS = 256.0
SECONDS = 600.0                     # 10 minutes: 20 epochs
N_EPOCHS = 20
# label -> (frequency Hz, amplitude uV); every channel its own tone so a mix-up shows
TONES = {"F4": (1.0, 60.0), "C4": (12.0, 30.0), "O2": (10.0, 40.0), "M1": (5.0, 5.0),
         "M2": (7.0, 4.0), "E1": (2.0, 80.0), "E2": (3.0, 70.0), "Chin1": (40.0, 15.0),
         "Chin2": (60.0, 5.0)}
PAIRS = {"F4-M1": ("F4", "M1"), "C4-M1": ("C4", "M1"), "O2-M1": ("O2", "M1"),
         "LOC": ("E1", "M2"), "ROC": ("E2", "M1"), "CHIN": ("Chin1", "Chin2")}


def write_night(path: Path, drop: tuple[str, ...] = ()) -> Path:
    signals = {label: sine(FS, SECONDS, f, a) for label, (f, a) in TONES.items()
               if label not in drop}
    return write_psg_edf(path, signals, FS)


def expected_uv(role: str, times: np.ndarray) -> np.ndarray:
    positive, negative = PAIRS[role]
    wave = lambda label: TONES[label][1] * np.sin(2 * np.pi * TONES[label][0] * times)  # noqa: E731
    return wave(positive) - wave(negative)


@pytest.fixture(autouse=True)
def user_home(tmp_path, monkeypatch):
    """Keep the recent-files list out of the real home folder."""
    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))


@pytest.fixture
def night(tmp_path) -> Path:
    return write_night(tmp_path / "night.edf")


def key(qtbot, window, k, modifier=Qt.KeyboardModifier.NoModifier):
    qtbot.keyClick(window, k, modifier)


def test_keyboard_scoring_navigation_and_undo(qtbot, night, errors):
    window = open_window(qtbot, night)
    session = window.session
    assert session.epoch == 0 and session.n_epochs == N_EPOCHS
    for k in (Qt.Key.Key_W, Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3, Qt.Key.Key_R,
              Qt.Key.Key_0, Qt.Key.Key_5, Qt.Key.Key_A):
        key(qtbot, window, k)
    scored = [Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R, Stage.W, Stage.R, Stage.ARTEFACT]
    assert session.study.stages()[:8] == scored
    assert session.study.stages()[8:] == [Stage.UNSCORED] * (N_EPOCHS - 8)
    assert session.epoch == 8                      # each key scored and advanced
    decisions = session.study.decisions()
    assert [d.epoch for d in decisions] == list(range(8))
    assert {d.source for d in decisions} == {MANUAL} and {d.scorer for d in decisions} == {"alice"}
    assert window.hypnogram.stages()[:8] == scored  # hypnogram follows

    key(qtbot, window, Qt.Key.Key_Left)
    assert session.epoch == 7
    key(qtbot, window, Qt.Key.Key_PageUp)
    assert session.epoch == 6
    key(qtbot, window, Qt.Key.Key_Right)
    key(qtbot, window, Qt.Key.Key_PageDown)
    assert session.epoch == 8
    key(qtbot, window, Qt.Key.Key_End)
    assert session.epoch == N_EPOCHS - 1
    key(qtbot, window, Qt.Key.Key_Right)           # stays on the last epoch
    assert session.epoch == N_EPOCHS - 1
    key(qtbot, window, Qt.Key.Key_Home)
    assert session.epoch == 0
    assert window.hypnogram.current == 0

    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert session.study.stage(7) is Stage.UNSCORED   # the artefact on epoch 7 is reverted
    assert session.epoch == 7                          # and shown
    last = session.study.decisions()[-1]
    assert last.source == UNDO and last.epoch == 7 and last.undoes == decisions[-1].id
    assert window.hypnogram.stages()[7] is Stage.UNSCORED
    assert errors == []


def test_keys_work_whatever_child_has_focus(qtbot, night):
    window = open_window(qtbot, night)
    window.hypnogram.plot_widget.setFocus()
    qtbot.keyClick(window.hypnogram.plot_widget, Qt.Key.Key_2)
    window.waveform.canvas.setFocus()
    qtbot.keyClick(window.waveform.canvas, Qt.Key.Key_3)
    assert window.session.study.stages()[:2] == [Stage.N2, Stage.N3]


def test_close_and_reopen_restores_stages_and_position(qtbot, night):
    window = open_window(qtbot, night)
    for k in (Qt.Key.Key_2, Qt.Key.Key_2, Qt.Key.Key_3):
        key(qtbot, window, k)
    window.session.go_to(12)
    session = window.session
    study_path = session.study.path
    window.close()
    assert window.session is None and session.study.closed   # closing the window closes it
    Study.open(study_path).close()                  # closed cleanly: it opens again

    again = open_window(qtbot, night)
    assert again.session.epoch == 12
    assert again.session.stages()[:4] == [Stage.N2, Stage.N2, Stage.N3, Stage.UNSCORED]
    assert again.hypnogram.stages()[:3] == [Stage.N2, Stage.N2, Stage.N3]
    assert again.hypnogram.current == 12


def test_closing_while_loading_closes_the_late_session(qtbot, night):
    window = MainWindow(scorer="alice")
    qtbot.addWidget(window)
    window.show()
    arrived = []
    window.loader.loaded.connect(arrived.append)
    window.open_recording(night)
    window.close()                                  # before the load has been delivered
    assert len(arrived) == 1 and arrived[0].study.closed
    assert window.session is None and not window.loader.busy


def test_click_on_hypnogram_moves_to_that_epoch(qtbot, night):
    window = open_window(qtbot, night)
    view = window.hypnogram
    point = view.plot_widget.mapFromScene(view.scene_pos_of_epoch(13))
    qtbot.mouseClick(view.plot_widget.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(point.x(), point.y()))
    assert window.session.epoch == 13
    assert window.waveform.epoch == 13
    assert window.waveform.window_s == (13 * 30 - 15, 13 * 30 + 45)


def test_montage_dialog_changes_and_stores_the_mapping(qtbot, night):
    window = open_window(qtbot, night)
    dialog = window.open_montage_dialog()
    qtbot.waitExposed(dialog)
    dialog.set_role("O2-M1", None)
    dialog.set_role("F4-M1", "F4", "M2")
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok),
                     Qt.MouseButton.LeftButton)
    montage = window.session.study.montage
    assert montage.roles["O2-M1"] is None
    assert montage.roles["F4-M1"] == Derivation("F4", "M2")
    assert window.waveform.row("O2-M1").missing
    assert "O2-M1 — missing" in window.waveform.row("O2-M1").label_html()
    assert "reduced montage: O2-M1 missing" in window.status_label.text()
    study_path = window.session.study.path
    window.close()
    with Study.open(study_path) as study:             # saved in the study file
        assert study.montage.roles["F4-M1"] == Derivation("F4", "M2")
        assert study.montage.roles["O2-M1"] is None


def test_bad_file_shows_one_line_error_and_the_app_keeps_running(qtbot, tmp_path, night, errors):
    bad = tmp_path / "broken.edf"
    bad.write_bytes(np.random.default_rng(1).bytes(5000))
    window = MainWindow(scorer="alice")
    qtbot.addWidget(window)
    window.show()
    window.open_recording(bad)
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=15000)
    assert "broken.edf" in errors[0] and "\n" not in errors[0]
    assert "Traceback" not in errors[0]
    assert window.session is None and window.isVisible()
    window.open_recording(night)                     # and it still opens a good recording
    qtbot.waitUntil(lambda: window.session is not None, timeout=15000)
    assert len(errors) == 1


def test_a_bad_file_leaves_the_open_study_as_it_was(qtbot, tmp_path, night, errors):
    """File > Open on a text file renamed .edf: the file is checked first; on failure the night
    on screen stays open, where it was, with its decisions."""
    window = open_window(qtbot, night)
    window.go_to(7)
    key(qtbot, window, Qt.Key.Key_2)
    session, title = window.session, window.windowTitle()
    bad = tmp_path / "notes.edf"
    bad.write_text("Patient slept well. Lights off 23:10.\n" * 50)
    window.open_recording(bad)
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=15000)
    assert "notes.edf" in errors[0] and "\n" not in errors[0]
    assert window.session is session and not session.study.closed
    assert window.windowTitle() == title and window.session.epoch == 8
    assert window.hypnogram.stages()[7] is Stage.N2 and window.waveform.epoch == 8
    key(qtbot, window, Qt.Key.Key_3)                 # and scoring goes on in the same study
    assert session.study.stage(8) is Stage.N3


def test_waveform_rows_show_the_recording_samples(qtbot, night):
    window = open_window(qtbot, night)
    view = window.waveform
    assert [row.key for row in view.rows] == list(ROLES)
    window.session.go_to(10)
    start, stop = 10 * 30 - 15.0, 10 * 30 + 45.0
    times = np.arange(start * FS, stop * FS) / FS
    for role in ROLES:                                # standard display filters on
        x, y = view.row(role).curve.getOriginalDataset()
        np.testing.assert_allclose(x, times)
        np.testing.assert_allclose(y, expected_uv(role, times), atol=1.5, err_msg=role)
    for role in ROLES:                                # raw: exactly the file's samples
        view.set_filter(role, RAW)
        x, y = view.row(role).curve.getOriginalDataset()
        np.testing.assert_allclose(y, expected_uv(role, times), atol=0.05, err_msg=role)
    window.session.go_to(0)                           # first epoch: nothing before 0 s
    x, y = view.row("C4-M1").curve.getOriginalDataset()
    assert x[0] == 0.0 and x[-1] == pytest.approx(45.0 - 1 / FS)


def test_gain_keys_and_slow_wave_ruler(qtbot, night):
    window = open_window(qtbot, night)
    f4 = window.waveform.row("F4-M1")
    low, high = f4.plot.getViewBox().viewRange()[1]
    assert high - low == pytest.approx(100.0)         # default: 100 uV per row, like the model
    key(qtbot, window, Qt.Key.Key_Plus)
    assert f4.gain_uv == 75.0
    low, high = f4.plot.getViewBox().viewRange()[1]
    assert high - low == pytest.approx(75.0)
    key(qtbot, window, Qt.Key.Key_Minus)
    key(qtbot, window, Qt.Key.Key_Minus)
    assert f4.gain_uv == 150.0 and window.waveform.row("CHIN").gain_uv == 100.0
    ruler = window.waveform.ruler
    assert ruler is not None and ruler.span_uv() == pytest.approx(75.0)
    ruler.setRegion((10.0, 85.0))
    assert ruler.span_uv() == pytest.approx(75.0)
    menu = window.waveform.row_menu(f4)                 # the row's context menu
    gains = {a.text(): a for a in menu.actions()[0].menu().actions()}
    gains["300 µV"].trigger()
    assert f4.gain_uv == 300.0 and window.waveform.row("C4-M1").gain_uv == 150.0  # one row only
    assert "300 µV/row" in f4.label_html()


def test_help_lists_the_scoring_keys(qtbot, night):
    window = open_window(qtbot, night)
    key(qtbot, window, Qt.Key.Key_F1)
    dialog = window.shortcuts_dialog
    assert dialog is not None and dialog.isVisible()
    text = dialog.findChild(QLabel).text()
    assert "<b>W, 0</b></td><td>Score W" in text and "<b>R, 5</b></td><td>Score REM" in text
    assert "Ctrl+Z" in text


def test_status_bar_title_and_ai_panel(qtbot, tmp_path):
    recording = write_night(tmp_path / "reduced.edf", drop=("O2",))
    window = open_window(qtbot, recording, scorer="bob")
    for k in (Qt.Key.Key_W, Qt.Key.Key_2):
        key(qtbot, window, k)
    window.session.score(Stage.N2, epoch=5, advance=False)
    assert window.status_label.text() == (
        "Epoch 3 / 20 · 22:31:00 · Unscored · scored 3/20 (15%)"
        " · reduced montage: O2-M1 missing")
    key(qtbot, window, Qt.Key.Key_Home)
    assert window.status_label.text().startswith("Epoch 1 / 20 · 22:30:00 · W · scored 3/20")
    assert window.windowTitle().startswith("reduced.edf — scorer: bob")
    assert window.ai_panel.text() == NO_MODEL_TEXT
    assert window.waveform.row("O2-M1").missing
    assert DEFAULT_START.strftime("%H:%M:%S") == "22:30:00"


def test_recent_list_remembers_opened_recordings(qtbot, night, tmp_path):
    window = open_window(qtbot, night)
    window._fill_recent_menu()
    texts = [a.text() for a in window.recent_menu.actions()]
    assert texts == [str(night.resolve())]
    assert (tmp_path / "home" / "recent.json").is_file()


def test_core_imports_no_qt():
    code = ("import sys, sleepvlm_ws.core.review.session, sleepvlm_ws.core.signals.display_filters, "
            "sleepvlm_ws.core.signals.recording, sleepvlm_ws.core.signals.montage, sleepvlm_ws.core.study.study; "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))]; "
            "assert not bad, bad")
    env = {k: v for k, v in os.environ.items()}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_export_writes_the_hypnogram_and_audits_it(qtbot, night, tmp_path, errors):
    window = open_window(qtbot, night)
    for k in (Qt.Key.Key_W, Qt.Key.Key_1, Qt.Key.Key_2):
        key(qtbot, window, k)
    out = window.export_to(tmp_path / "night-hypnogram.csv", "csv")
    assert errors == [] and out is not None and out.is_file()
    text = out.read_text()
    assert "N1" in text and "N2" in text
    kinds = [e.kind for e in window.session.study.audit_events()]
    assert kinds[-1] == "export"
    assert window.export_to(night, "edf") is None     # never over the open recording
    assert len(errors) == 1 and "night.edf" in errors[0] and "recording" in errors[0]
    assert night.read_bytes()[:8] == b"0       "


def test_sleep_statistics_dialog_marks_what_unscored_epochs_would_change(qtbot, night, errors):
    window = open_window(qtbot, night)
    window.menu_actions["statistics"].trigger()
    assert errors == ["No epoch is scored yet: there are no sleep statistics."]
    window.go_to(3)
    for k in (Qt.Key.Key_W, Qt.Key.Key_2):
        key(qtbot, window, k)
    window.menu_actions["statistics"].trigger()
    dialog = window.statistics_dialog
    n = window.session.n_epochs
    assert dialog.isVisible() and dialog.warning.isVisible()
    assert f"{n - 2} of {n} epochs from lights off to on are unscored" in dialog.warning.text()
    text = dialog.text()
    assert f"Time in bed (TIB): {n * 0.5:.1f} min" in text               # the whole recording
    assert "Total sleep time (TST) *: 0.5 min" in text and "Time in bed (TIB) *" not in text
    assert len(errors) == 1


def test_the_suffix_typed_decides_the_export_format(qtbot, night, tmp_path, errors):
    """"Files of type" says CSV, the name typed ends in .xml: NSRR XML is written (a name
    without a known suffix takes the filter's format and suffix)."""
    window = open_window(qtbot, night)
    key(qtbot, window, Qt.Key.Key_2)
    csv_filter = next(f for f in export_filters() if f.startswith("CSV table"))
    dialog = window.choose_export()
    assert dialog.selectedNameFilter() == csv_filter
    dialog.selectFile(str(tmp_path / "demo-hypnogram.xml"))
    dialog.accept()
    written = tmp_path / "demo-hypnogram.xml"
    assert errors == [] and written.read_text(encoding="utf-8").lstrip().startswith("<?xml")
    assert "<SleepStage>2</SleepStage>" in written.read_text(encoding="utf-8")
    dialog = window.choose_export()
    dialog.selectNameFilter(next(f for f in export_filters() if f.startswith("BIDS")))
    dialog.selectFile(str(tmp_path / "plain"))
    dialog.accept()
    assert errors == [] and (tmp_path / "plain.tsv").read_text().startswith("onset\tduration")


def test_view_menu_filters_and_other_channels(qtbot, tmp_path):
    signals = {label: sine(FS, SECONDS, f, a) for label, (f, a) in TONES.items()}
    signals["SpO2"] = 95.0 + sine(FS, SECONDS, 0.01, 2.0)
    recording = write_psg_edf(tmp_path / "spo2.edf", signals, FS,
                              units={**{k: "uV" for k in TONES}, "SpO2": "%"})
    window = open_window(qtbot, recording)
    view = window.waveform
    assert [r.key for r in view.rows] == list(ROLES)
    window.menu_actions["other_channels"].trigger()
    spo2 = view.row("channel:SpO2")
    assert spo2.unit == "%" and "% /row" not in spo2.label_html()
    low, high = spo2.plot.getViewBox().viewRange()[1]
    x, y = spo2.curve.getOriginalDataset()
    np.testing.assert_allclose(y, 95.0 + 2.0 * np.sin(2 * np.pi * 0.01 * x), atol=0.01)  # raw
    assert low < y.min() and y.max() < high and high - low < 10  # row scaled to the channel
    f4 = view.row("F4-M1")
    assert f4.flt.highpass_hz == 0.3 and f4.flt.lowpass_hz == 35.0
    window.menu_actions["filters"].trigger()                    # standard filters off
    assert not f4.flt.is_active
    window.menu_actions["notch_50"].trigger()
    assert f4.flt.notch_hz == 50.0 and view.row("CHIN").flt.notch_hz == 50.0
    assert spo2.flt.notch_hz is None
    window.menu_actions["filters"].trigger()
    assert f4.flt == view.row("F4-M1").flt and f4.flt.highpass_hz == 0.3
    assert f4.flt.notch_hz == 50.0


def test_caliper_measures_peak_to_peak_between_two_clicks(qtbot, night):
    window = open_window(qtbot, night)
    view = window.waveform
    row = view.row("F4-M1")
    vb = row.plot.getViewBox()

    def click(t, uv):
        point = view.canvas.mapFromScene(vb.mapViewToScene(QPointF(t, uv)))
        qtbot.mouseClick(view.canvas.viewport(), Qt.MouseButton.LeftButton, pos=point)

    click(10.0, -30.0)
    assert view.caliper.measurement is None
    click(10.5, 30.0)
    measurement = view.caliper.measurement
    assert measurement.key == "F4-M1"
    assert measurement.amplitude == pytest.approx(60.0, abs=2.0)
    assert measurement.duration_s == pytest.approx(0.5, abs=0.1)


def test_run_gui_opens_the_recording_and_returns_the_exit_code(qtbot, night):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from sleepvlm_ws.ui.app import run_gui

    seen = {}

    def poll():
        windows = [w for w in QApplication.topLevelWidgets()
                   if isinstance(w, MainWindow) and w.isVisible()]
        if windows and windows[0].session is not None:
            seen["title"] = windows[0].windowTitle()
            seen["scorer"] = windows[0].session.scorer
            windows[0].close()
            QApplication.instance().exit(0)
        else:
            QTimer.singleShot(50, poll)

    QTimer.singleShot(50, poll)
    assert run_gui(str(night), scorer="carol") == 0
    assert seen == {"title": "night.edf — scorer: carol — SleepVLM Workstation",
                    "scorer": "carol"}


def test_run_gui_unattended_screenshot_and_exit_code(qtbot, night, tmp_path, capsys):
    from sleepvlm_ws.ui.app import run_gui

    shot = tmp_path / "shot.png"
    assert run_gui(str(night), scorer="dave", screenshot=str(shot), exit_after=0.1) == 0
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.edf"
    bad.write_bytes(b"not an edf at all" * 50)
    assert run_gui(str(bad), scorer="dave", exit_after=5) == 2     # no dialog to hang on
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.edf" in err[0]
