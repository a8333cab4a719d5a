"""Evidence in the window: real widgets offscreen, a real EDF with planted waveforms, its
evidence measured by the waveform view's worker. The AI panel badges each cited rule and marks
the rationale's claims; the waveform rows show the detected events as bands, per kind."""

from __future__ import annotations

import html

import pytest
from gui import open_window
from PySide6.QtGui import QTextCharFormat, QTextCursor
from planted_evidence import K_COMPLEX, REMS, SLOW_WAVES, SPINDLE, write_planted_edf

from sleepvlm_ws.core.base.rules import load_rules
from sleepvlm_ws.core.base.stages import EPOCH_SECONDS, Stage
from sleepvlm_ws.core.signals.montage import auto_montage
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.core.study.suggestions import Suggestion
from sleepvlm_ws.core.trust.evidence.claims import check_claims
from sleepvlm_ws.core.trust.evidence.epoch_cache import EvidenceCache
from sleepvlm_ws.core.trust.evidence.rules_check import check_suggestion
from sleepvlm_ws.ui.ai_panel import AIPanel
from sleepvlm_ws.ui.suggestion_text import VERDICT_COLOURS
from sleepvlm_ws.ui.evidence_overlays import KIND_COLOURS

WAIT_MS = 30_000
FALSE_AND_TRUE = "A sleep spindle in C4 at 12 s. A spindle on C4-M1 at 5 s. Low chin tone."


@pytest.fixture(autouse=True)
def user_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))


@pytest.fixture
def planted(tmp_path):
    return write_planted_edf(tmp_path / "planted.edf")


def _suggestion(epoch, stage, rules, rationale=None) -> Suggestion:
    return Suggestion(epoch=epoch, model_id="m", renderer_version="r", pass_name="fast", stage=stage,
                      stage_text=stage.value, rules=tuple(rules), rationale=rationale)


def _format_at(panel: AIPanel, offset: int) -> QTextCharFormat:
    cursor = QTextCursor(panel.rationale.document())
    cursor.setPosition(offset + 1)        # the format of the character before the cursor
    return cursor.charFormat()


def test_panel_badges_rules_and_marks_claims(qtbot, planted):
    with Recording.open(planted) as rec:
        ev = EvidenceCache(rec, auto_montage([c.label for c in rec.channels])).get(SPINDLE[0]).evidence
    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.set_model("tiny")
    suggestion = _suggestion(SPINDLE[0], Stage.N2, ["N2.1", "N3.1", "R.2"], FALSE_AND_TRUE)
    panel.show_suggestion(suggestion, load_rules())
    assert all(c.icon().isNull() for c in panel.chips) and panel.checks_label.isHidden()
    rule_checks = check_suggestion(suggestion, ev, (Stage.N1, Stage.N2))
    panel.set_evidence_checks(rule_checks, check_claims(suggestion.rationale, ev))

    assert [c.text() for c in panel.chips] == ["N2.1", "N3.1", "R.2"]       # badge beside, not in
    assert [c.property("verdict") for c in panel.chips] == ["supported", "contradicted", "contradicted"]
    assert not any(c.icon().isNull() for c in panel.chips)
    n3 = panel.chips[1].toolTip()
    assert html.escape(load_rules()["N3.1"].title) in n3         # the catalogue's words stay
    assert "contradicted by the signal" in n3 and "F4-M1" in n3 and "N3 needs 6 s" in n3
    assert "over 75 µV peak" in n3 and " uV" not in n3          # the catalogue, as a technologist writes
    assert panel.checks_label.text() == "Signal check: rules 1 ✓ 2 ✗ · rationale 1 ✓ 2 ✗"

    text = panel.rationale.toPlainText()
    assert text == FALSE_AND_TRUE                                 # still the model's plain text
    false_at, true_at = text.index("sleep spindle in C4"), text.index("spindle on C4-M1")
    assert _format_at(panel, false_at).underlineColor().name() == VERDICT_COLOURS["contradicted"]
    assert _format_at(panel, true_at).underlineColor().name() == VERDICT_COLOURS["supported"]
    assert _format_at(panel, text.index("A sleep")).underlineStyle() == QTextCharFormat.UnderlineStyle.NoUnderline
    tip = panel.claim_tooltip_at(false_at + 3)
    assert tip.startswith("✗ contradicted") and "within 1 s of 12 s" in tip
    assert "chin EMG" in panel.claim_tooltip_at(text.index("Low chin"))
    assert panel.claim_tooltip_at(0) is None
    # a new suggestion drops the old checks
    panel.show_suggestion(_suggestion(4, Stage.N2, ["N2.2"]), load_rules())
    assert panel.rule_checks == {} and panel.chips[0].property("verdict") == ""


def _wait_measured(qtbot, window, epochs):
    qtbot.waitUntil(lambda: all(window.waveform.evidence.findings(e) is not None for e in epochs),
                    timeout=WAIT_MS)


def test_waveform_rows_show_detected_events_per_kind(qtbot, planted):
    window = open_window(qtbot, planted)
    overlays = window.waveform.overlays
    window.go_to(SPINDLE[0])
    _wait_measured(qtbot, window, [SPINDLE[0] - 1, SPINDLE[0], SPINDLE[0] + 1])
    spindles = [e for e in overlays.events() if e.kind == "spindle"]
    onset = SPINDLE[0] * EPOCH_SECONDS + SPINDLE[1]
    assert any(e.role == "C4-M1" and abs(e.start_s - onset) < 0.5 for e in spindles)
    c4 = overlays.items["C4-M1"].regions
    assert any(abs(a - onset) < 0.5 and colour == KIND_COLOURS["spindle"] for a, _, colour in c4)
    assert overlays.items["LOC"].regions == []

    action = window.menu_actions["overlay_spindle"]
    assert action.isCheckable() and action.isChecked()
    view = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    submenu = next(a.menu() for a in view.actions() if a.text() == "Evidence overlays")
    assert [a.text() for a in submenu.actions()] == ["Sleep spindles", "K complexes", "Slow waves",
                                                     "Rapid eye movements", "Alpha rhythm"]
    assert action in submenu.actions()
    action.setChecked(False)
    assert not [e for e in overlays.events() if e.kind == "spindle"] and overlays.items["C4-M1"].regions == []
    action.setChecked(True)
    assert overlays.items["C4-M1"].regions

    # paging on: slow waves (F4), REMs (both eye rows), a K complex (F4), each where planted
    window.go_to(SLOW_WAVES[0])
    _wait_measured(qtbot, window, [SLOW_WAVES[0]])
    qtbot.waitUntil(lambda: any(e.kind == "slow_wave" for e in overlays.events()), timeout=WAIT_MS)
    window.go_to(REMS[0])
    _wait_measured(qtbot, window, [REMS[0]])
    rems = [e for e in overlays.events() if e.kind == "rem"]
    for sec in REMS[1]:
        t = REMS[0] * EPOCH_SECONDS + sec
        assert {e.role for e in rems if e.start_s - 0.5 < t < e.stop_s + 0.5} == {"LOC", "ROC"}
    window.go_to(K_COMPLEX[0])
    _wait_measured(qtbot, window, [K_COMPLEX[0]])
    kcs = [e for e in overlays.events() if e.kind == "k_complex"]
    assert [round(e.start_s - K_COMPLEX[0] * EPOCH_SECONDS) for e in kcs] == [12]
    window.go_to(0)
    _wait_measured(qtbot, window, [0])
    assert any(e.kind == "alpha" and e.role == "O2-M1" for e in overlays.events())


def test_ai_panel_checks_use_the_technologists_hypnogram(qtbot, planted):
    window = open_window(qtbot, planted)
    epoch = 4                      # N2 without spindles: N2.2 holds only after an N2 epoch
    window.go_to(epoch)
    suggestion = _suggestion(epoch, Stage.N2, ["N2.2"], "No sleep spindles; slow waves over 20%.")
    window.ai_panel.show_suggestion(suggestion, window.ai.rules)
    window.ai._show_checks(suggestion, epoch)
    qtbot.waitUntil(lambda: bool(window.ai_panel.rule_checks), timeout=WAIT_MS)   # measured off-thread
    assert window.ai_panel.chips[0].property("verdict") == "contradicted"    # epoch 3 unscored
    assert [c.verdict for c in window.ai_panel.claim_checks] == ["supported", "contradicted"]
    window.session.go_to(epoch - 1)
    window.session.score(Stage.N2)                 # the technologist scores epoch 3 N2, moves on
    assert window.session.epoch == epoch
    window.ai_panel.show_suggestion(suggestion, window.ai.rules)
    window.ai._show_checks(suggestion, epoch)
    check = window.ai_panel.rule_checks["N2.2"]
    assert check.verdict == "supported" and "previous epoch scored N2" in check.reason
    assert "previous epoch scored N2" in html.unescape(window.ai_panel.chips[0].toolTip())
