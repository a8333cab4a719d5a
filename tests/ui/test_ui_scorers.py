"""Study ▸ Scorers in the real window (offscreen): other technologists' scorings imported from
real files, one track each and the consensus with its ties, the pairwise kappa table, the
differing epochs as a jump list that drives the window, a tie adjudicated (audited), and the
dialog following the scoring while it stays open."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from edf_factory import sine, write_psg_edf
from gui import open_window  # noqa: E402
from PySide6.QtCore import Qt

from sleepvlm_ws.core.base.hypnogram import Hypnogram
from sleepvlm_ws.core.base.stages import EPOCH_SECONDS, Stage
from sleepvlm_ws.core.study.formats import export_hypnogram
from sleepvlm_ws.core.study.scorings import CONSENSUS_ADJUDICATED, scorer_names
from sleepvlm_ws.core.trust.agreement import agreement
from sleepvlm_ws.core.trust.consensus import consensus
from sleepvlm_ws.core.trust.inter_scorer import fleiss_kappa
from sleepvlm_ws.core.trust.report import format_kappa
from sleepvlm_ws.core.trust.study_consensus import study_consensus
from sleepvlm_ws.ui.scorers_dialog import NEEDS_TWO, REDRAW_MS

W, N1, N2, N3, R = Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R
N_EPOCHS = 20
OWN = [W, W, N1, N2, N2, R]                      # scored from the keyboard, the rest left unscored
BOB = [W, W, N2, N2, N3, R] + [N2] * 4 + [N2] + [N2] * 9
CHO = [W, N1, N3, N2, N3, R] + [N2] * 4 + [N1] + [N2] * 9
# epoch 1: W W N1 (majority W); 2: N1 N2 N3 (a three-way tie); 4: N2 N3 N3; 10: N2 N1 (bob and
# cho only: a tie)
DIFFERING, TIES = [1, 2, 4, 10], [2, 10]


@pytest.fixture(autouse=True)
def user_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))


@pytest.fixture
def night(tmp_path) -> Path:
    fs = 128.0
    signals = {label: sine(fs, N_EPOCHS * EPOCH_SECONDS, f, 30.0)
               for label, f in (("F4", 1.0), ("C4", 12.0), ("O2", 10.0), ("M1", 5.0), ("M2", 7.0),
                                ("E1", 2.0), ("E2", 3.0), ("Chin1", 40.0), ("Chin2", 60.0))}
    return write_psg_edf(tmp_path / "night.edf", signals, fs)


def _csv(tmp_path: Path, name: str, stages) -> Path:
    return export_hypnogram(Hypnogram(list(stages)), "csv", tmp_path / f"{name}.csv")


def _score_own(qtbot, window):
    window.go_to(0)
    keys = {W: Qt.Key.Key_W, N1: Qt.Key.Key_1, N2: Qt.Key.Key_2, R: Qt.Key.Key_R}
    for stage in OWN:
        qtbot.keyClick(window, keys[stage])
    assert window.session.study.stages()[:6] == OWN


def test_scorers_dialog_tracks_agreement_jump_list_and_adjudication(qtbot, night, tmp_path, errors):
    window = open_window(qtbot, night)
    _score_own(qtbot, window)
    window.menu_actions["scorers"].trigger()
    dialog = window.scorers_dialog
    assert dialog.isVisible() and dialog.summary.text() == NEEDS_TWO
    assert dialog.differing_epochs() == [] and not dialog.adjudicate_button.isEnabled()

    # real files through the study's import: a bad one and a taken name change nothing
    bad = tmp_path / "bad.csv"
    bad.write_text("this is not a hypnogram\n")
    assert not dialog.import_file(bad, "bob")
    assert len(errors) == 1 and "bad.csv" in errors[0]
    assert dialog.import_file(_csv(tmp_path, "bob", BOB), "bob")
    assert not dialog.import_file(_csv(tmp_path, "bob2", BOB), "BOB")
    assert len(errors) == 2 and "bob" in errors[1].lower()
    assert dialog.import_file(_csv(tmp_path, "cho", CHO), "cho")
    study = window.session.study
    assert scorer_names(study) == ["bob", "cho"]

    assert dialog.tracks.names == ["study", "bob", "cho", "consensus"]
    assert dialog.differing_epochs() == DIFFERING
    assert sorted(x / EPOCH_SECONDS - 0.5 for x in dialog.tracks.tie_marks.getData()[0]) == TIES
    own = study.stages()
    expected = format_kappa(agreement(own, BOB).kappa)
    names = ["study", "bob", "cho"]
    assert dialog.pairs.item(names.index("study"), names.index("bob")).text() == expected
    assert dialog.pairs.item(names.index("bob"), names.index("study")).text() == expected
    fleiss = fleiss_kappa({"study": own, "bob": BOB, "cho": CHO})
    assert fleiss.n_epochs == 6
    assert f"Fleiss' kappa: <b>{format_kappa(fleiss.kappa)}</b> over 6 epochs" in dialog.summary.text()
    assert "ties waiting for adjudication: 2" in dialog.summary.text()
    # each against the consensus of the other two: bob against study + cho
    others = consensus({"study": own, "cho": CHO})
    assert dialog.pairs.item(names.index("bob"), 3).text() == format_kappa(
        agreement(others.stages, BOB).kappa)

    start = window.session.recording.start
    first = dialog.differing.item(0).text()
    assert first.startswith(f"epoch 2 ({(start + timedelta(seconds=30)).strftime('%H:%M:%S')}): ")
    dialog.ties_only.setChecked(True)
    assert dialog.differing_epochs() == TIES
    dialog.ties_only.setChecked(False)
    assert dialog.differing_epochs() == DIFFERING

    # a majority is not a tie: nothing to settle there
    dialog.differing.setCurrentRow(DIFFERING.index(1))
    assert not dialog.adjudicate_button.isEnabled() and dialog.tie_stage.count() == 0
    # the three-way tie offers its three stages; settling it is audited with who chose
    dialog.differing.setCurrentRow(DIFFERING.index(2))
    assert dialog.adjudicate_button.isEnabled()
    assert [dialog.tie_stage.itemText(i) for i in range(dialog.tie_stage.count())] == ["N1", "N2", "N3"]
    dialog.tie_stage.setCurrentIndex(1)
    qtbot.mouseClick(dialog.adjudicate_button, Qt.MouseButton.LeftButton)
    assert study_consensus(study).consensus.stages[2] is N2
    event = [e for e in study.audit_events() if e.kind == CONSENSUS_ADJUDICATED][-1]
    assert event.actor == "alice" and event.payload["epoch"] == 2
    assert dialog.differing.currentItem().text().endswith("adjudicated N2")
    assert len(dialog.tracks.tie_marks.getData()[0]) == 1

    # the jump list drives the window
    dialog.differing.setCurrentRow(DIFFERING.index(4))
    qtbot.keyClick(dialog.differing, Qt.Key.Key_Return)
    assert window.session.epoch == 4
    assert len(errors) == 2


def test_the_open_dialog_follows_the_scoring_and_closes_with_the_study(qtbot, night, tmp_path, errors):
    window = open_window(qtbot, night)
    _score_own(qtbot, window)
    window.menu_actions["scorers"].trigger()
    dialog = window.scorers_dialog
    assert dialog.import_file(_csv(tmp_path, "bob", BOB), "bob")
    assert dialog.differing_epochs() == [2, 4]          # own against bob only
    window.go_to(7)
    qtbot.keyClick(window, Qt.Key.Key_3)                 # N3 where bob scored N2
    qtbot.waitUntil(lambda: dialog.differing_epochs() == [2, 4, 7], timeout=5000)
    session = window.session
    window.close_session()
    assert not dialog.isVisible() and window.scorers_dialog is None
    session.stage_changed.emit(0, W)         # the closed dialog no longer listens
    qtbot.wait(REDRAW_MS + 200)
    assert errors == []


def test_a_scorer_with_nothing_in_common_shows_a_dash_not_a_traceback(qtbot, night, tmp_path, errors):
    """Two scorings that share no scored epoch (one scored the first minutes, the other the
    rest) have no kappa: the table says so and the dialog still works."""
    window = open_window(qtbot, night)
    _score_own(qtbot, window)                                   # epochs 0-5
    late = [Stage.UNSCORED] * 6 + [N2] * (N_EPOCHS - 6)        # epochs 6-19 only
    window.menu_actions["scorers"].trigger()
    dialog = window.scorers_dialog
    assert dialog.import_file(_csv(tmp_path, "dan", late), "dan")
    assert dialog.tracks.names == ["study", "dan", "consensus"]
    assert dialog.pairs.item(0, 1).text() == "—" and dialog.pairs.item(1, 0).text() == "—"
    assert dialog.differing_epochs() == [] and errors == []
