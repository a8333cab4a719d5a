"""The AI panel, the scoring worker and the hypnogram's suggestion layer: real widgets, a real
tiny model pack (random weights), a real synthetic EDF and real study files.

The one shim: the override note comes from ``AIPanel.note_provider`` (a modal input dialog
cannot be typed into offscreen), and error boxes are recorded instead of shown.
"""

from __future__ import annotations

import html
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gui import accept_with_enter, open_window  # noqa: E402
from packs import copy_pack
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

from sleepvlm_ws.core.base.rules import load_rules
from sleepvlm_ws.core.base.stages import EPOCH_SECONDS, SLEEP_STAGES, Stage
from sleepvlm_ws.core.model.answer import format_answer, parse_answer
from sleepvlm_ws.core.model.model_pack import load_manifest
from sleepvlm_ws.core.model.settings import NOTE, ModelSettings, load_settings, save_settings, settings_path
from sleepvlm_ws.core.review.suggestion_review import NOTE_REQUIRED
from sleepvlm_ws.core.signals.montage import auto_montage
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study.ai_runs import AI_RUN_FINISHED
from sleepvlm_ws.core.study.study import AI_ACCEPTED, AI_OVERRIDDEN, MANUAL, Study
from sleepvlm_ws.core.study.suggestions import (FAST, RATIONALE, Suggestion, SuggestionKey, SuggestionStore,
                                                rationale_only_flags)
from sleepvlm_ws.core.synth.night import generate_night, write_night_edf
from sleepvlm_ws.ui.ai_panel import NO_MODEL_TEXT, NOT_SCORED_TEXT, AIPanel
from sleepvlm_ws.ui.hypnogram_view import STAGE_LEVELS, SUGGESTION_OFFSET, HypnogramView
from sleepvlm_ws.ui.main_window import MainWindow
from sleepvlm_ws.ui.override_note import OverrideNoteDialog
from sleepvlm_ws.ui.run_progress import settled_eta
from sleepvlm_ws.ui.settings_dialog import SettingsDialog
from sleepvlm_ws.ui.suggestion_text import clinical_units

STAGES = [Stage.W, Stage.N1, Stage.N2, Stage.N2, Stage.N3, Stage.R]
N_EPOCHS = len(STAGES)
LOAD_MS = 120_000          # generous: the CI machine has 2 cores shared with other jobs
RUN_MS = 240_000
KEY_FOR = {Stage.W: Qt.Key.Key_W, Stage.N1: Qt.Key.Key_1, Stage.N2: Qt.Key.Key_2,
           Stage.N3: Qt.Key.Key_3, Stage.R: Qt.Key.Key_R}


@pytest.fixture(autouse=True)
def user_home(tmp_path, monkeypatch):
    """Settings, recent files and the pack hash cache go to a private folder. The model runs on
    one thread (llama.cpp's worker threads spin: on a busy 2-core CI machine two are several
    times slower than one) and writes short rationales (the tiny model's are noise anyway)."""
    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))
    save_settings(ModelSettings(threads=1, rationale_tokens=16))


@pytest.fixture
def night(tmp_path) -> Path:
    return write_night_edf(generate_night(seed=5, fs=100.0, stages=list(STAGES)),
                           tmp_path / "night.edf")


def load_model(qtbot, window: MainWindow, pack: Path) -> None:
    with qtbot.waitSignal(window.ai.controller.model_loaded, timeout=LOAD_MS):
        assert window.load_model(pack)
    assert window.ai.controller.has_model


def key(qtbot, window, k):
    qtbot.keyClick(window, k)


def stored(window: MainWindow, pass_name: str = FAST) -> list[int]:
    store = SuggestionStore(window.session.study)
    missing = store.missing_epochs(window.ai.controller.key.for_pass(pass_name))
    return sorted(set(range(N_EPOCHS)) - set(missing))


# ------------------------------------------------------------------ the whole flow, real model
def test_score_night_then_accept_and_override_with_a_note(qtbot, night, tiny_pack, errors):
    window = open_window(qtbot, night)
    assert window.ai_panel.text() == NO_MODEL_TEXT
    assert not window.menu_actions["score_night"].isEnabled()
    load_model(qtbot, window, tiny_pack)
    assert "tiny-qwen25vl-test 0.0.1" in window.ai_panel.model_label.text()
    assert window.ai_panel.text() == NOT_SCORED_TEXT

    progress: list[tuple[int, int]] = []
    window.ai.controller.progress.connect(lambda done, total, eta: progress.append((done, total)))
    with qtbot.waitSignal(window.ai.controller.finished, timeout=RUN_MS) as blocker:
        window.menu_actions["score_night"].trigger()
        assert window.ai.progress_bar.isVisible()
    summary = blocker.args[0]
    assert summary.outcome == "completed" and summary.stored[FAST] == N_EPOCHS
    assert progress[0] == (0, N_EPOCHS) and progress[-1] == (N_EPOCHS, N_EPOCHS)
    assert not window.ai.progress_bar.isVisible()
    assert stored(window) == list(range(N_EPOCHS))

    # the suggestion layer: every epoch, drawn apart from the (empty) technologist hypnogram
    store = SuggestionStore(window.session.study)
    answers = store.all_for(window.ai.controller.key)
    assert window.hypnogram.suggestions() == [answers[e].stage for e in range(N_EPOCHS)]
    assert window.hypnogram.stages() == [Stage.UNSCORED] * N_EPOCHS
    _, y = window.hypnogram.suggestion_line.getData()
    assert y[2] == STAGE_LEVELS[answers[1].stage] + SUGGESTION_OFFSET

    # the panel follows the epoch on screen: stage, one chip per rule, the catalogue's words
    key(qtbot, window, Qt.Key.Key_Right)
    panel = window.ai_panel
    suggestion = answers[1]
    assert panel.suggestion.epoch == 1 and suggestion.stage is not None
    assert panel.stage_label.text() == suggestion.stage.label
    rules = load_rules()
    assert [c.text() for c in panel.chips] == list(suggestion.rules) and panel.chips
    for chip, rule_id in zip(panel.chips, suggestion.rules):
        assert html.escape(rules[rule_id].title) in chip.toolTip()
        assert html.escape(clinical_units(rules[rule_id].text)) in chip.toolTip()
        assert " uV" not in chip.toolTip()
        assert chip.property("flagged") == (not rules[rule_id].fits(suggestion.stage))

    # Enter accepts (whatever has focus): an ai_accepted decision, then the next epoch
    panel.rationale.setFocus()
    accept_with_enter(qtbot, panel.rationale, window)
    study = window.session.study
    decision = study.decisions()[-1]
    assert (decision.epoch, decision.stage, decision.source, decision.scorer) == \
        (1, suggestion.stage, AI_ACCEPTED, "alice")
    assert window.session.epoch == 2 and window.hypnogram.stages()[1] is suggestion.stage
    event = study.audit_events()[-1]
    assert event.payload["suggestion"]["suggested_stage"] == suggestion.stage.value

    # O, a stage key, a note: ai_overridden with the note, then the next epoch
    other = next(s for s in (Stage.N2, Stage.N3) if s is not answers[2].stage)
    asked = []
    panel.note_provider = lambda _panel, stage, s: asked.append((stage, s.epoch)) or \
        "spindles on C4"
    widths = (window.ai_dock.width(), window.waveform.width())
    key(qtbot, window, Qt.Key.Key_O)
    assert window.ai.override_armed and panel.armed_label.isVisible()
    assert "press W, 1, 2, 3 or R" in panel.armed_label.text()
    qtbot.wait(50)
    assert (window.ai_dock.width(), window.waveform.width()) == widths    # the layout holds
    key(qtbot, window, KEY_FOR[other])
    assert asked == [(other, 2)]
    decision = study.decisions()[-1]
    assert (decision.epoch, decision.stage, decision.source, decision.note) == \
        (2, other, AI_OVERRIDDEN, "spindles on C4")
    assert window.session.epoch == 3 and not window.ai.override_armed

    # Esc drops an armed override; an empty note is refused: nothing written, the epoch stays,
    # and a stage key is a manual score again
    count = len(study.decisions())
    key(qtbot, window, Qt.Key.Key_O)
    key(qtbot, window, Qt.Key.Key_Escape)
    assert not window.ai.override_armed and len(study.decisions()) == count
    panel.note_provider = lambda *_: "   "
    other = next(s for s in (Stage.N2, Stage.N3) if s is not answers[3].stage)
    key(qtbot, window, Qt.Key.Key_O)
    key(qtbot, window, KEY_FOR[other])
    assert len(study.decisions()) == count and window.session.epoch == 3
    assert window.statusBar().currentMessage() == NOTE_REQUIRED
    key(qtbot, window, Qt.Key.Key_1)                  # not armed any more: manual scoring
    assert study.decisions()[-1].source == MANUAL and study.decisions()[-1].stage is Stage.N1
    assert study.verify().ok
    assert errors == []


def test_accept_all_unflagged_during_a_run_says_the_model_has_not_finished(qtbot, night, tiny_pack,
                                                                          errors):
    """Half the night answered (confident N2, stored as the run would), the run held on the
    rest: the question names what the model has answered so far."""
    window = open_window(qtbot, night)
    load_model(qtbot, window, tiny_pack)
    controller = window.ai.controller
    store = SuggestionStore(window.session.study)
    sure = {s.value: (0.97 if s is Stage.N2 else 0.0075) for s in SLEEP_STAGES}
    for epoch in range(3):
        store.put(epoch, parse_answer(format_answer("N2", ["N2.1"])), controller.key.for_pass(FAST),
                  stage_probabilities=sure)
    window.menu_actions["score_night"].trigger()
    window.menu_actions["pause_run"].trigger()
    qtbot.waitUntil(lambda: controller.is_held or not controller.running, timeout=RUN_MS)
    assert controller.running
    box = window.review.ask_accept_unflagged()
    answered = len(window.review.queue.suggestions)
    assert box is not None and answered < N_EPOCHS
    assert f"still scoring the night: it has answered {answered} of {N_EPOCHS} epochs" in box.text()
    box.reject()
    window.menu_actions["cancel_run"].trigger()
    qtbot.waitUntil(lambda: not controller.running, timeout=RUN_MS)
    box = window.review.ask_accept_unflagged()
    assert box is not None and "still scoring" not in box.text()
    box.reject()
    assert errors == []


def test_a_bad_file_does_not_stop_the_run_and_no_control_acts_without_a_study(qtbot, night, tmp_path,
                                                                              tiny_pack, errors):
    window = open_window(qtbot, night)
    load_model(qtbot, window, tiny_pack)
    controller = window.ai.controller
    window.menu_actions["score_night"].trigger()
    window.menu_actions["pause_run"].trigger()
    qtbot.waitUntil(lambda: controller.is_held or not controller.running, timeout=RUN_MS)
    session = window.session
    bad = tmp_path / "notes.edf"
    bad.write_text("Patient slept well.\n" * 80)
    window.open_recording(bad)
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=15000)
    assert "notes.edf" in errors[0]
    assert window.session is session and controller.running and controller.is_held
    window.menu_actions["pause_run"].trigger()        # resume: the run finishes on this study
    qtbot.waitUntil(lambda: not controller.running, timeout=RUN_MS)
    assert window.ai.last_summary.outcome == "completed" and len(stored(window)) == N_EPOCHS
    window.close_session()
    panel, actions = window.ai_panel, window.menu_actions
    assert not panel.explain_button.isEnabled() and not panel.accept_button.isEnabled()
    assert not panel.override_button.isEnabled()
    for name in ("score_night", "explain", "accept_ai", "override_ai", "accept_unflagged",
                 "second_opinion", "next_flagged"):
        assert not actions[name].isEnabled(), name
    assert len(errors) == 1


def test_an_override_stays_in_view_with_who_and_why(qtbot, night, tiny_pack, errors):
    window = open_window(qtbot, night)
    load_model(qtbot, window, tiny_pack)
    store = SuggestionStore(window.session.study)
    for epoch in range(N_EPOCHS):       # citing no rule: nothing for the signal to contradict
        store.put(epoch, parse_answer(format_answer("W", [])), window.ai.controller.key.for_pass(FAST))
    window.ai.refresh()
    window.go_to(2)
    panel = window.ai_panel
    assert not panel.decision_label.isVisible()
    panel.note_provider = lambda *_: "K complex at 12 s"
    key(qtbot, window, Qt.Key.Key_O)
    key(qtbot, window, Qt.Key.Key_1)                  # W -> N1, with the note
    assert window.session.epoch == 3
    window.go_to(2)                                   # back on the overridden epoch
    assert panel.decision_label.isVisible()
    assert panel.decision_label.text() == ("Scored N1 by alice, overriding the suggestion: "
                                           "\u201cK complex at 12 s\u201d")
    assert panel.stage_label.text() == Stage.W.label  # the suggestion is still shown beside it
    window.go_to(N_EPOCHS - 1)                        # the last epoch: scoring does not advance
    key(qtbot, window, Qt.Key.Key_Return)
    assert panel.decision_label.text() == "Accepted W by alice"
    assert errors == []


def test_the_progress_label_fits_and_the_eta_settles(qtbot, tmp_path):
    window = MainWindow(scorer="amy")
    qtbot.addWidget(window)
    bar = window.ai.progress_bar
    bar.setRange(0, 942)
    bar.setValue(236)
    assert bar.minimumWidth() > bar.fontMetrics().horizontalAdvance(bar.text())
    # one estimate swings (a burst of answers, a busy machine): the ETA shown does not
    for eta in (420, 410, 3240, 400, 395, 390, 380):
        window.ai._on_progress(100, 942, eta)
    assert window.ai.eta_label.text() == "about 7 min left"
    assert settled_eta([]) is None


def test_accepting_a_contradicted_suggestion_asks_first_as_the_lab_decides(qtbot, night, tiny_pack,
                                                                          errors):
    """Epoch 0 is wake; the suggestion says N3 citing N3.1 (slow waves), which the signal
    contradicts: Enter asks first (or wants a note), and the decision's note says so."""
    window = open_window(qtbot, night)
    load_model(qtbot, window, tiny_pack)
    store = SuggestionStore(window.session.study)
    key_fast = window.ai.controller.key.for_pass(FAST)
    for epoch in (0, 1):
        store.put(epoch, parse_answer(format_answer("N3", ["N3.1"])), key_fast)
    store.put(2, parse_answer(format_answer("N2", [])), key_fast)      # cites nothing
    window.ai.refresh()
    study, evidence = window.session.study, window.waveform.evidence
    window.go_to(0)
    qtbot.waitUntil(lambda: evidence.findings(0) is not None, timeout=30000)
    key(qtbot, window, Qt.Key.Key_Return)
    box = window.ai.accept_box
    assert box is not None and box.isVisible() and "N3.1" in box.text()
    assert study.stage(0) is Stage.UNSCORED                           # nothing yet
    box.button(QMessageBox.StandardButton.Yes).click()
    decision = study.decisions()[-1]
    assert (decision.epoch, decision.stage, decision.source) == (0, Stage.N3, AI_ACCEPTED)
    assert decision.note.startswith("accepted although the signal contradicts N3.1: ")
    assert study.audit_events()[-1].payload["note"] == decision.note

    window.ai.settings = replace(window.ai.settings, contradicted_accept=NOTE)
    window.go_to(1)
    qtbot.waitUntil(lambda: evidence.findings(1) is not None, timeout=30000)
    window.ai_panel.accept_note_provider = lambda *_: None             # cancelled: nothing
    key(qtbot, window, Qt.Key.Key_Return)
    assert study.stage(1) is Stage.UNSCORED and "a note is required" in window.statusBar().currentMessage()
    window.ai_panel.accept_note_provider = lambda *_: "slow waves under the artefact"
    key(qtbot, window, Qt.Key.Key_Return)
    assert study.stage(1) is Stage.N3
    assert study.decisions()[-1].note.endswith("Why: slow waves under the artefact")
    window.go_to(2)
    key(qtbot, window, Qt.Key.Key_Return)                              # nothing contradicted
    assert study.stage(2) is Stage.N2 and study.decisions()[-1].note is None
    assert errors == []


def test_the_override_note_dialog_will_not_take_an_empty_note(qtbot, tmp_path):
    suggestion = Suggestion(epoch=0, model_id="m", renderer_version=RENDERER_VERSION, pass_name=FAST,
                            stage=Stage.W, stage_text="W")
    dialog = OverrideNoteDialog(None, Stage.N1, suggestion)
    qtbot.addWidget(dialog)
    dialog.show()
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert "Why N1 and not the model's W?" in dialog.question.text()
    assert not ok.isEnabled() and dialog.reason.isVisible() and "required" in dialog.reason.text()
    qtbot.keyClicks(dialog.field, "   ")
    qtbot.keyClick(dialog.field, Qt.Key.Key_Return)   # Enter on blanks: still open, nothing taken
    assert dialog.isVisible() and not ok.isEnabled()
    qtbot.keyClicks(dialog.field, "arousal")
    assert ok.isEnabled() and not dialog.reason.isVisible()
    qtbot.keyClick(dialog.field, Qt.Key.Key_Return)
    assert dialog.result() == dialog.DialogCode.Accepted and dialog.note().strip() == "arousal"


def test_pause_holds_the_run_explain_jumps_the_queue_and_cancel_stops(qtbot, night, tiny_pack,
                                                                       errors):
    window = open_window(qtbot, night)
    load_model(qtbot, window, tiny_pack)
    controller = window.ai.controller
    window.menu_actions["score_night"].trigger()
    window.menu_actions["pause_run"].trigger()
    qtbot.waitUntil(lambda: controller.is_held or not controller.running, timeout=RUN_MS)
    assert controller.is_held and controller.running
    held_at = stored(window)
    assert len(held_at) < N_EPOCHS and window.ai.eta_label.text() == "paused"
    qtbot.wait(400)
    assert stored(window) == held_at                   # nothing scored while paused

    # the epoch on screen is explained while the night run is held
    target = N_EPOCHS - 1
    window.go_to(target)
    assert window.ai_panel.text() == NOT_SCORED_TEXT
    with qtbot.waitSignal(controller.explained, timeout=RUN_MS) as blocker:
        key(qtbot, window, Qt.Key.Key_E)
        assert window.ai_panel.explaining
    assert blocker.args == [target, ""]
    assert stored(window) == held_at and stored(window, RATIONALE) == [target]
    explained = SuggestionStore(window.session.study).get(target, controller.key)
    assert explained.rationale is not None
    assert window.ai_panel.rationale.toPlainText() == clinical_units(explained.rationale)
    assert not window.ai_panel.explaining

    # resume: the run goes on; cancel: it stops before the next epoch
    with qtbot.waitSignal(controller.progress, timeout=RUN_MS,
                          check_params_cb=lambda done, total, eta: done > len(held_at)):
        window.menu_actions["pause_run"].trigger()
    with qtbot.waitSignal(controller.finished, timeout=RUN_MS) as blocker:
        window.menu_actions["cancel_run"].trigger()
    assert blocker.args[0].outcome == "cancelled"
    assert len(held_at) < len(stored(window)) < N_EPOCHS
    assert not window.menu_actions["pause_run"].isChecked()

    # the window keeps working
    window.go_to(0)
    key(qtbot, window, Qt.Key.Key_2)
    assert window.session.study.decisions()[-1].stage is Stage.N2
    assert errors == []


def test_closing_the_window_mid_run_cancels_it_and_ends_the_thread(qtbot, night, tiny_pack):
    window = open_window(qtbot, night)
    load_model(qtbot, window, tiny_pack)
    study_path = window.session.study.path
    with qtbot.waitSignal(window.ai.controller.progress, timeout=RUN_MS):
        window.menu_actions["score_night"].trigger()
    thread = window.ai.controller.thread
    window.close()                          # waits for the epoch under way, then stops
    assert window.ai.controller.thread is None and thread.isFinished()
    with Study.open(study_path) as study:
        ends = [e.payload for e in study.audit_events() if e.kind == AI_RUN_FINISHED]
        assert [e["outcome"] for e in ends] == ["cancelled"]
        assert ends[0]["counts"]["epochs_done"] < N_EPOCHS
        assert study.verify().ok


def test_a_corrupted_pack_is_one_line_and_manual_scoring_goes_on(qtbot, night, tiny_pack,
                                                                 tmp_path, errors):
    bad = copy_pack(tiny_pack, tmp_path, "bad-pack")
    lm = load_manifest(bad).lm_path
    data = bytearray(lm.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lm.write_bytes(bytes(data))
    window = open_window(qtbot, night)
    assert window.load_model(bad)
    qtbot.waitUntil(lambda: bool(errors), timeout=LOAD_MS)
    assert len(errors) == 1 and "\n" not in errors[0]
    assert lm.name in errors[0] and "sha256" in errors[0]
    assert window.ai_panel.text() == NO_MODEL_TEXT
    assert not window.ai.controller.has_model and not window.ai.controller.busy
    assert not window.menu_actions["score_night"].isEnabled()
    key(qtbot, window, Qt.Key.Key_2)
    key(qtbot, window, Qt.Key.Key_Return)             # no model: Enter does nothing
    decisions = window.session.study.decisions()
    assert [(d.epoch, d.stage, d.source) for d in decisions] == [(0, Stage.N2, MANUAL)]
    assert window.session.epoch == 1


# ------------------------------------------------------------------ the panel on its own
def test_panel_shows_the_model_s_probability_beside_the_stage(qtbot, tmp_path):
    study = Study.create(tmp_path / "p.sleepvlm", recording_path=tmp_path / "x.edf", n_epochs=3,
                         montage=auto_montage(["F4", "M1"]), scorer="amy")
    store = SuggestionStore(study)
    probs = {"W": 0.01, "N1": 0.1, "N2": 0.87, "N3": 0.02, "R": 0.0}
    store.put(0, parse_answer('{"applicable_rules": ["N2.1"], "sleep_stage": "N2"}'),
              SuggestionKey("m1", RENDERER_VERSION, FAST),
              stage_probabilities=probs)
    store.put(1, parse_answer('{"applicable_rules": ["R.1"], "sleep_stage": "R"}'),
              SuggestionKey("m1", RENDERER_VERSION, FAST))
    study.close()
    with Study.open(tmp_path / "p.sleepvlm") as reopened:      # read back from the file
        store = SuggestionStore(reopened)
        key = SuggestionKey("m1", RENDERER_VERSION)
        known, unknown = store.get(0, key), store.get(1, key)
    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_model("SleepVLM", "m1")
    panel.show_suggestion(known, load_rules())
    assert panel.stage_label.text() == "N2" and panel.confidence_label.text() == "\u00b7 87 %"
    assert panel.confidence_label.isVisible()
    assert panel.text() == "Suggested N2 \u00b7 87 % \u00b7 N2.1"
    tip = panel.confidence_label.toolTip().splitlines()
    assert tip[1:6] == ["W: 1 %", "N1: 10 %", "N2: 87 %  \u25c0 suggested", "N3: 2 %", "REM: 0 %"]
    assert panel.stage_label.toolTip() == panel.confidence_label.toolTip()
    panel.show_suggestion(unknown, load_rules())
    assert panel.stage_label.text() == "REM" and panel.confidence_label.text() == "\u00b7 \u2014"
    assert "unknown" in panel.confidence_label.toolTip()
    assert panel.text() == "Suggested REM \u00b7 R.1"
    panel.show_suggestion(None, load_rules())
    assert not panel.confidence_label.isVisible()


def test_panel_shows_rules_flags_and_rationale_as_plain_text(qtbot, tmp_path):
    study = Study.create(tmp_path / "s.sleepvlm", recording_path=tmp_path / "x.edf", n_epochs=4,
                         montage=auto_montage(["F4", "M1"]), scorer="amy")
    text = ('{\u201creasoning_text\u201d: \u201c<b>not bold</b> <img src=x.png> spindles\u201d, '
            '\u201capplicable_rules\u201d: [\u201cN2.1\u201d, \u201cR.1\u201d, \u201cX.9\u201d], '
            '\u201csleep_stage\u201d: \u201cN2\u201d}')
    store = SuggestionStore(study)
    assert store.put(2, parse_answer(text), SuggestionKey("m1", RENDERER_VERSION, FAST))
    suggestion = store.get(2, SuggestionKey("m1", RENDERER_VERSION))
    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_model("SleepVLM 3B 1.0 (Q4_K_M)", "m1")
    assert panel.text() == NOT_SCORED_TEXT and not panel.accept_button.isEnabled()
    rules = load_rules()
    panel.show_suggestion(suggestion, rules)
    assert panel.stage_label.text() == "N2"
    assert panel.text() == "Suggested N2 · N2.1, R.1, X.9"
    assert [c.text() for c in panel.chips] == ["N2.1", "R.1", "X.9"]
    assert [c.property("flagged") for c in panel.chips] == [False, True, True]
    assert html.escape(clinical_units(rules["N2.1"].text)) in panel.chips[0].toolTip()
    assert "Not a rule in the catalogue" in panel.chips[2].toolTip()
    flags = panel.flags_label.text().splitlines()
    assert flags[0] == "parsed after repair: smart quotes"
    assert "rule R.1 does not belong to N2" in flags
    assert "rule X.9 is not in the rule catalogue" in flags
    assert panel.flags_label.textFormat() == Qt.TextFormat.PlainText
    assert panel.rationale.toPlainText() == "<b>not bold</b> <img src=x.png> spindles"
    assert "<b>" not in panel.rationale.toHtml() and "&lt;b&gt;" in panel.rationale.toHtml()
    assert panel.accept_button.isEnabled() and not panel.explain_button.isEnabled()
    panel.show_suggestion(None, rules)
    assert panel.text() == NOT_SCORED_TEXT and panel.chips == []

    # both passes: the fast answer's stage and rules, the rationale answer's flags kept apart
    for pass_name, answer in ((FAST, '{"applicable_rules": ["N2.1"], "sleep_stage": "N2"}'),
                              (RATIONALE, '{"reasoning_text": "spindles", '
                                          '"applicable_rules": ["R.1"], "sleep_stage": "N3"')):
        store.put(3, parse_answer(answer), SuggestionKey("m1", RENDERER_VERSION, pass_name))
    merged = store.get(3, SuggestionKey("m1", RENDERER_VERSION))
    apart = rationale_only_flags(merged, store.get_pass(3, SuggestionKey("m1", RENDERER_VERSION, FAST)))
    assert set(apart) == {"truncated", "rule_stage_mismatch:R.1"}
    panel.show_suggestion(merged, rules, apart)
    assert panel.text() == "Suggested N2 · N2.1" and panel.rationale.toPlainText() == "spindles"
    assert [c.property("flagged") for c in panel.chips] == [False]
    assert set(panel.flags_label.text().splitlines()) == {
        "the rationale names N3, the fast answer N2", "rationale answer: the answer was cut off",
        "rationale answer: rule R.1 does not belong to N3"}

    # microvolts as a technologist writes them (the default pack learnt "uV"), claims still found
    text = '{"reasoning_text": "Slow waves over 75 uV on F4-M1 for 12.0 s (uV peak-to-peak).", ' \
           '"applicable_rules": ["N3.1"], "sleep_stage": "N3"}'
    store.put(1, parse_answer(text), SuggestionKey("m1", RENDERER_VERSION, RATIONALE))
    panel.show_suggestion(store.get(1, SuggestionKey("m1", RENDERER_VERSION)), rules)
    assert panel.rationale.toPlainText() == "Slow waves over 75 µV on F4-M1 for 12.0 s (µV peak-to-peak)."
    assert len(clinical_units(text)) == len(text)
    study.close()


# ------------------------------------------------------------------ the hypnogram layer
def test_suggestion_layer_is_a_separate_dotted_line_updated_in_place(qtbot):
    view = HypnogramView()
    qtbot.addWidget(view)
    view.set_night([Stage.W, Stage.N2] + [Stage.UNSCORED] * 8)
    items = list(view.plot.items)
    view.set_suggestions({0: Stage.W, 1: Stage.N3})
    view.set_suggestion(4, Stage.R)
    assert list(view.plot.items) == items                 # nothing added or rebuilt
    assert view.suggestions()[:5] == [Stage.W, Stage.N3, None, None, Stage.R]
    x, y = view.suggestion_line.getData()
    assert np.allclose(x[:4], [0, EPOCH_SECONDS, EPOCH_SECONDS, 2 * EPOCH_SECONDS])
    assert y[2] == y[3] == STAGE_LEVELS[Stage.N3] + SUGGESTION_OFFSET
    assert np.isnan(y[4:8]).all() and y[8] == STAGE_LEVELS[Stage.R] + SUGGESTION_OFFSET
    assert view.suggestion_line.opts["pen"].style() == Qt.PenStyle.DotLine
    assert view.stages()[1] is Stage.N2                   # the technologist's stage untouched
    view.set_night([Stage.UNSCORED] * 3)
    assert view.suggestions() == [None] * 3


# ------------------------------------------------------------------ settings and start-up
def test_settings_file_defaults_and_dialog(qtbot, tmp_path):
    settings_path().unlink()
    defaults = load_settings()
    assert defaults.threads == (os.cpu_count() or 1) and defaults.gpu_layers == 0
    assert defaults.runtime_options() == {"n_threads": defaults.threads, "n_gpu_layers": 0,
                                          "n_ctx": None}
    settings_path().write_text('{"threads": -4, "gpu_layers": "lots", "context_size": 100}')
    odd = load_settings()
    assert (odd.threads, odd.gpu_layers, odd.context_size) == (1, 0, 512)
    settings_path().write_text("not json")
    assert load_settings() == defaults

    window = MainWindow(scorer="amy")
    qtbot.addWidget(window)
    dialog = window.ai.open_settings()
    dialog.threads.setValue(3)
    dialog.gpu_layers.setValue(-1)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    saved = load_settings()
    assert (saved.threads, saved.gpu_layers) == (3, -1) and window.ai.settings == saved
    assert saved.contradicted_accept == "confirm"
    dialog = window.ai.open_settings()
    dialog.contradicted_accept.setCurrentIndex(dialog.contradicted_accept.findData(NOTE))
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert load_settings().contradicted_accept == NOTE == window.ai.settings.contradicted_accept
    assert isinstance(dialog, SettingsDialog)


def test_run_gui_with_a_model_and_the_cli_option(qtbot, night, tiny_pack, tmp_path, capsys):
    from sleepvlm_ws.cli.parser import build_parser
    from sleepvlm_ws.ui.app import run_gui

    for command in (["open", str(night)], ["demo"]):
        assert build_parser().parse_args(command + ["--model", "P"]).model == "P"
    shot = tmp_path / "shot.png"
    assert run_gui(str(night), scorer="dave", screenshot=str(shot), exit_after=0,
                   model=str(tiny_pack)) == 0
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = tmp_path / "no-such-pack"
    assert run_gui(str(night), scorer="dave", exit_after=30, model=str(missing)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-pack" in err[0]


def test_explain_preempts_the_running_pass_and_the_progress_names_the_pass(qtbot, night, tiny_pack,
                                                                           errors):
    """Issue 14 item 13 and 15: E during Score night is answered before the pass goes on (the
    run gives way to it), and the time left says which pass it is about."""
    save_settings(ModelSettings(threads=1, rationale_tokens=16, rationale_whole_night=True))
    window = open_window(qtbot, night)
    load_model(qtbot, window, tiny_pack)
    controller = window.ai.controller
    labels: list[str] = []
    summaries: list = []
    controller.progress.connect(lambda *_: labels.append(window.ai.eta_label.text()))
    controller.finished.connect(summaries.append)
    with qtbot.waitSignal(controller.progress, timeout=RUN_MS,
                          check_params_cb=lambda done, total, eta: done >= 1):
        window.menu_actions["score_night"].trigger()
    target = N_EPOCHS - 1
    window.go_to(target)
    with qtbot.waitSignal(controller.explained, timeout=RUN_MS) as blocker:
        key(qtbot, window, Qt.Key.Key_E)
    assert blocker.args == [target, ""]
    assert len(stored(window)) < N_EPOCHS and stored(window, RATIONALE) == [target]
    assert window.ai_panel.rationale.toPlainText() != ""
    qtbot.waitUntil(lambda: bool(summaries), timeout=RUN_MS)
    summary = summaries[0]
    assert summary.outcome == "completed" and summary.gave_way == 1
    assert stored(window) == stored(window, RATIONALE) == list(range(N_EPOCHS))
    assert any(text.startswith("stage pass: ") for text in labels)
    assert any(text.startswith("rationale pass: ") for text in labels)
    assert labels.index(next(t for t in labels if t.startswith("rationale pass"))) > labels.index(
        next(t for t in labels if t.startswith("stage pass")))
    assert errors == []
