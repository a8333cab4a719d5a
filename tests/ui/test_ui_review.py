"""The review features in the real main window: flagged-epoch keys, counts, hypnogram marks,
the second opinion in its thread, and "Accept all unflagged…" behind its question."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from edf_factory import write_psg_edf
from gui import open_window
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.model.answer import format_answer, parse_answer
from sleepvlm_ws.core.review.review_queue import BULK_ACCEPT
from sleepvlm_ws.core.review.session import ReviewSession
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study import audit, audit_verify
from sleepvlm_ws.core.study.study import AI_ACCEPTED, default_study_path
from sleepvlm_ws.core.study.suggestions import FAST, SuggestionKey, SuggestionStore
from sleepvlm_ws.core.synth import generate_night, write_night_edf
from sleepvlm_ws.core.trust import second_opinion

MODEL = "m" * 64
STAGES = [Stage.W] * 6 + [Stage.N1] * 2 + [Stage.N2] * 8 + [Stage.N3] * 6 + [Stage.N2] * 2
# what the model "said": the generator's stages, except N2 for the whole N3 run (16-21) and
# no stage at all for epoch 3
SUGGESTED = {e: ("N2" if s is Stage.N3 else s.value) for e, s in enumerate(STAGES)}
NO_STAGE_EPOCH = 3


@pytest.fixture(autouse=True)
def user_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))


@pytest.fixture
def night(tmp_path):
    path = write_night_edf(generate_night(seed=5, fs=256.0, stages=STAGES), tmp_path / "n.edf")
    session = ReviewSession.open(path, scorer="alice")
    store = SuggestionStore(session.study)
    for epoch, stage in SUGGESTED.items():
        text = "no idea" if epoch == NO_STAGE_EPOCH else format_answer(stage, [])
        store.put(epoch, parse_answer(text), SuggestionKey(MODEL, RENDERER_VERSION, FAST))
    session.close()
    return path


def _expected_flagged():
    flagged = {NO_STAGE_EPOCH}                                       # no stage
    flagged |= {e for e, s in SUGGESTED.items() if s == "N1"}        # N1
    for e in range(len(STAGES)):                                     # stage changes
        here = SUGGESTED[e] if e != NO_STAGE_EPOCH else None
        for n in (e - 1, e + 1):
            if (here and 0 <= n < len(STAGES) and n != NO_STAGE_EPOCH
                    and SUGGESTED[n] != here):
                flagged.add(e)
    return sorted(flagged)


def test_flagged_keys_counts_and_hypnogram_marks(qtbot, night):
    window = open_window(qtbot, night)
    flagged = _expected_flagged()
    assert window.review.queue.flagged == flagged
    assert window.hypnogram.flagged() == flagged and window.hypnogram.reviewed_flags() == set()
    assert f"reviewed 0 of {len(flagged)} flagged" in window.status_label.text()

    window.go_to(0)
    qtbot.keyClick(window, Qt.Key.Key_F)
    assert window.session.epoch == flagged[0]
    qtbot.keyClick(window, Qt.Key.Key_F)
    assert window.session.epoch == flagged[1]
    qtbot.keyClick(window, Qt.Key.Key_BracketRight)
    assert window.session.epoch == flagged[2]
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ShiftModifier)
    assert window.session.epoch == flagged[1]
    qtbot.keyClick(window, Qt.Key.Key_BracketLeft)
    assert window.session.epoch == flagged[0]
    assert window.review.last_message.startswith(f"Epoch {flagged[0] + 1}: flagged (priority")

    qtbot.keyClick(window, Qt.Key.Key_1)           # scores N1 and moves on
    assert window.session.stage(flagged[0]) is Stage.N1
    assert f"reviewed 1 of {len(flagged)} flagged" in window.status_label.text()
    assert window.hypnogram.reviewed_flags() == {flagged[0]}

    window.go_to(flagged[-1])
    qtbot.keyClick(window, Qt.Key.Key_F)
    assert window.session.epoch == flagged[-1]
    assert window.review.last_message == "No more flagged epochs after this one"


def test_p_walks_the_flags_highest_priority_first_and_the_status_counts_each_reason(qtbot, night):
    window = open_window(qtbot, night)
    queue = window.review.queue
    order = [it.epoch for it in queue.by_priority()]
    assert queue.item(NO_STAGE_EPOCH).priority == max(it.priority for it in queue.items.values())
    window.go_to(0)
    qtbot.keyClick(window, Qt.Key.Key_P)
    assert window.session.epoch == order[0] == NO_STAGE_EPOCH           # no stage: weight 5
    assert window.review.last_message.startswith(f"Epoch {NO_STAGE_EPOCH + 1}: flagged (priority")
    qtbot.keyClick(window, Qt.Key.Key_W)              # reviewed: P skips it now
    qtbot.keyClick(window, Qt.Key.Key_P)
    assert window.session.epoch == order[1]
    priorities = [queue.item(e).priority for e in order]
    assert priorities == sorted(priorities, reverse=True)
    counts = queue.reason_counts()
    assert counts["no_stage"] == 1 and counts["n1"] == sum(s == "N1" for s in SUGGESTED.values())
    text = window.status_label.text()
    assert f"reviewed 1 of {len(queue.flagged)} flagged (" in text
    assert "no stage 1" in text and f"N1 {counts['n1']}" in text and "stage change" in text


def test_l_goes_to_the_least_confident_unreviewed_flag_f_stays_in_time(qtbot, tmp_path):
    """Worst first with L (the model's stored probability, lowest first, reviewed ones skipped);
    F still walks forward in time."""
    stages = [Stage.W] * 3 + [Stage.N2] * 7
    path = write_night_edf(generate_night(seed=6, fs=128.0, stages=stages), tmp_path / "c.edf")
    session = ReviewSession.open(path, scorer="alice")
    store = SuggestionStore(session.study)
    confidence = {1: 0.45, 4: 0.30, 7: 0.40}              # below 0.9: flagged
    for epoch, stage in enumerate(stages):
        p = confidence.get(epoch, 0.97)
        dist = {s.value: (p if s is stage else (1 - p) / 4)
                for s in (Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R)}
        store.put(epoch, parse_answer(format_answer(stage.value, [])),
                  SuggestionKey(MODEL, RENDERER_VERSION, FAST), stage_probabilities=dist)
    session.close()
    window = open_window(qtbot, path)
    queue = window.review.queue
    assert queue.flagged == [1, 2, 3, 4, 7]                  # 2, 3: the W -> N2 change
    assert [it.epoch for it in queue.least_confident()] == [4, 7, 1, 2, 3]
    window.go_to(0)
    qtbot.keyClick(window, Qt.Key.Key_L)
    assert window.session.epoch == 4
    assert "model 30 %" in window.review.last_message
    assert "model unsure (30% N2)" in window.review.last_message
    qtbot.keyClick(window, Qt.Key.Key_F)                     # forward in time from 4
    assert window.session.epoch == 7
    qtbot.keyClick(window, Qt.Key.Key_2)                     # reviewed: L skips it now
    qtbot.keyClick(window, Qt.Key.Key_L)
    assert window.session.epoch == 4
    qtbot.keyClick(window, Qt.Key.Key_2)
    qtbot.keyClick(window, Qt.Key.Key_L)
    assert window.session.epoch == 1
    for epoch in (1, 2, 3):
        window.go_to(epoch)
        qtbot.keyClick(window, Qt.Key.Key_W)
    qtbot.keyClick(window, Qt.Key.Key_L)
    assert window.review.last_message == "Every flagged epoch is reviewed"


def test_second_opinion_runs_in_its_thread_and_flags_disagreement(qtbot, night):
    window = open_window(qtbot, night)
    deep = [e for e, s in enumerate(STAGES) if s is Stage.N3]
    assert not set(deep) & set(window.review.queue.flagged)   # only a second opinion sees it
    with qtbot.waitSignal(window.review.finished, timeout=120000):
        assert window.review.run_second_opinion()
        assert not window.menu_actions["second_opinion"].isEnabled()
    assert window.menu_actions["second_opinion"].isEnabled()
    stored = second_opinion.load(window.session.study)
    assert sorted(stored) == list(range(len(STAGES)))
    assert window.review.queue.criteria["evidence_checked"]
    assert "newly stored" in window.review.last_message
    # YASA sees the generator's N3 where the model said N2: those epochs are now flagged
    disagreeing = [e for e in deep if stored[e].stage is Stage.N3]
    assert len(disagreeing) >= len(deep) // 2
    for e in disagreeing:
        assert "second opinion: N3" in window.review.queue.item(e).describe()
    assert set(disagreeing) <= set(window.hypnogram.flagged())
    agree = np.mean([stored[e].stage is s for e, s in enumerate(STAGES)])
    assert agree > 0.5
    # the second opinion in sight: its own hypnogram track, and a line in the panel
    assert window.hypnogram.second_opinion() == [stored[e].stage for e in range(len(STAGES))]
    window.go_to(deep[0])
    line = window.ai_panel.opinion_label
    assert line.isVisible() and line.text().startswith("Second opinion (YASA ")
    assert f": {stored[deep[0]].stage.label} \u00b7 " in line.text() and line.text().endswith("%")


def test_yasa_leads_the_offered_stage_and_the_panel_says_so(qtbot, night, tiny_pack, errors):
    """The default source: once YASA has staged the night (for real), the panel offers its
    stage, names it and shows what the model read; Enter accepts YASA's stage with both in the
    audit event; the setting "the model pack only" offers the model's stage again."""
    window = open_window(qtbot, night)
    with qtbot.waitSignal(window.ai.controller.model_loaded, timeout=120000):
        assert window.load_model(tiny_pack)
    model_id = window.ai.controller.model_id
    store = SuggestionStore(window.session.study)
    for epoch, stage in SUGGESTED.items():         # the tiny pack's answers, as a run stores them
        text = "no idea" if epoch == NO_STAGE_EPOCH else format_answer(stage, [f"{stage}.1"])
        store.put(epoch, parse_answer(text), SuggestionKey(model_id, RENDERER_VERSION, FAST))
    window.ai.refresh()
    deep = [e for e, s in enumerate(STAGES) if s is Stage.N3]
    window.go_to(deep[2])
    assert window.ai_panel.stage_label.text() == Stage.N2.label
    assert not window.ai_panel.source_label.isVisible()      # no second opinion yet: the model's
    with qtbot.waitSignal(window.review.finished, timeout=120000):
        assert window.review.run_second_opinion()
    stored = second_opinion.load(window.session.study)
    target = next(e for e in deep if stored[e].stage is Stage.N3)
    window.go_to(target)
    panel = window.ai_panel
    assert panel.stage_label.text() == Stage.N3.label and panel.source_label.isVisible()
    line = panel.source_label.text()
    assert line.startswith("Stage from YASA ") and "trained on real nights" in line
    assert "the model read N2" in line and "its rules and rationale are for N2" in line
    assert [c.text() for c in panel.chips] == ["N2.1"]
    assert not panel.chips[0].property("flagged")      # N2.1 belongs to the model's reading
    assert window.hypnogram.suggestions()[target] is Stage.N3
    qtbot.keyClick(window, Qt.Key.Key_Return)
    study = window.session.study
    decision = study.decisions()[-1]
    assert (decision.epoch, decision.stage, decision.source) == (target, Stage.N3, AI_ACCEPTED)
    ref = study.audit_events()[-1].payload["suggestion"]
    assert ref["stage_source"] == stored[target].method and ref["model_stage"] == "N2"

    dialog = window.ai.open_settings()
    dialog.stage_source.setCurrentIndex(dialog.stage_source.findData("model"))
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    window.go_to(target)
    assert window.ai_panel.stage_label.text() == Stage.N2.label
    assert not window.ai_panel.source_label.isVisible()
    assert window.hypnogram.suggestions()[target] is Stage.N2
    assert errors == []


def test_a_pack_on_the_authors_pixels_shows_its_own_suggestions(qtbot, night, tiny_pack, tmp_path):
    """The window keys suggestions by the loaded pack's renderer: answers stored under
    svlm-render-2 show for a pack declaring it, and the workstation's own are not mixed in."""
    from packs import pack_with_renderer

    from sleepvlm_ws.core.signals.render import AUTHORS_RENDERER_VERSION

    pack = pack_with_renderer(tiny_pack, tmp_path, AUTHORS_RENDERER_VERSION)
    window = open_window(qtbot, night)
    with qtbot.waitSignal(window.ai.controller.model_loaded, timeout=120000):
        assert window.load_model(pack)
    controller = window.ai.controller
    assert controller.renderer_version == AUTHORS_RENDERER_VERSION
    store = SuggestionStore(window.session.study)
    store.put(0, parse_answer(format_answer("W", ["W.1"])),
              SuggestionKey(controller.model_id, RENDERER_VERSION, FAST))          # other pixels
    store.put(1, parse_answer(format_answer("N1", ["N1.1"])),
              SuggestionKey(controller.model_id, AUTHORS_RENDERER_VERSION, FAST))
    window.ai.refresh()
    window.go_to(0)
    assert window.ai.current_suggestion() is None
    window.go_to(1)
    shown = window.ai.current_suggestion()
    assert shown is not None and shown.renderer_version == AUTHORS_RENDERER_VERSION
    assert window.ai_panel.stage_label.text() == Stage.N1.label


def test_second_opinion_unavailable_shows_the_reason(qtbot, tmp_path, errors):
    rng = np.random.default_rng(1)
    path = write_psg_edf(tmp_path / "eog.edf", {"EOG E1-M2": rng.normal(0, 20, 256 * 600)}, 256.0)
    window = open_window(qtbot, path)
    with qtbot.waitSignal(window.review.finished, timeout=60000):
        window.review.run_second_opinion()
    reason = "second opinion unavailable: no central EEG channel ≥ 80 Hz in eog.edf"
    assert errors == [reason]
    assert window.review.last_message == reason


def test_accept_all_unflagged_asks_with_the_count_then_writes_audited(qtbot, night):
    window = open_window(qtbot, night)
    queue = window.review.queue
    count = len(queue.acceptable(window.session.stages()))
    assert count == len(STAGES) - len(queue.flagged)
    box = window.review.ask_accept_unflagged()
    assert f"for {count} unflagged" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert window.session.progress()[0] == 0              # cancelled: nothing written

    box = window.review.ask_accept_unflagged()
    box.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: window.session.progress()[0] == count, timeout=5000)
    study = window.session.study
    assert all(d.source == AI_ACCEPTED for d in study.decisions())
    assert [e.payload["count"] for e in study.audit_events() if e.kind == BULK_ACCEPT] == [count]
    assert window.hypnogram.stages()[0] is Stage.W
    assert window.review.ask_accept_unflagged() is None    # nothing left
    assert "Nothing to accept" in window.review.last_message
    assert study.verify().ok
    window.close_session()
    assert audit_verify.verify(default_study_path(night)).ok


def test_review_modules_import_no_qt():
    code = ("import sys, sleepvlm_ws.core.trust.second_opinion, sleepvlm_ws.core.review.review_queue; "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))]; "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr
