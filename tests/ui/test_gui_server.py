"""The workstation GUI sending its AI requests to a lab server: the model settings' server
fields, the dialog refusing a malformed address, and the real main window scoring a real EDF
night through llama-cpp-python's own OpenAI-compatible server (on loopback, serving the tiny
model pack; needs the server extras, like tests/model/test_remote.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from gui import open_window  # noqa: E402
from llama_cpp_server import ALIAS, API_KEY, free_port  # noqa: E402
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QDialogButtonBox

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.model.remote import API_KEY_ENV
from sleepvlm_ws.core.model.settings import (SERVER_PARALLEL_DEFAULT, ModelSettings, load_settings,
                                             save_settings, settings_path)
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study.ai_runs import AI_RUN_STARTED
from sleepvlm_ws.core.study.study import MANUAL
from sleepvlm_ws.core.study.suggestions import FAST, RATIONALE, SuggestionKey, SuggestionStore
from sleepvlm_ws.core.synth.night import generate_night, write_night_edf
from sleepvlm_ws.ui.ai_panel import NO_MODEL_TEXT, NOT_SCORED_TEXT
from sleepvlm_ws.ui.main_window import MainWindow
from sleepvlm_ws.ui.settings_dialog import SERVER_PLACEHOLDER, SettingsDialog
from sleepvlm_ws.ui.suggestion_text import clinical_units

pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server extras are missing")

REMOTE_ID = f"remote:{ALIAS}"
STAGES = [Stage.W, Stage.N2, Stage.N3, Stage.R]
N_EPOCHS = len(STAGES)
LOAD_MS = 60_000
RUN_MS = 240_000
POOL_THREAD_PREFIX = "sleepvlm-request"     # ScoringRun's request threads (parallel > 1)


@pytest.fixture(autouse=True)
def user_home(tmp_path, monkeypatch):
    """Settings and the pack hash cache in a private folder; the server's API key in the
    environment, where the GUI reads it (as the CLI does)."""
    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    save_settings(ModelSettings(threads=1, rationale_tokens=16))


@pytest.fixture
def night(tmp_path) -> Path:
    return write_night_edf(generate_night(seed=7, fs=100.0, stages=list(STAGES)),
                           tmp_path / "night.edf")


def _use_server(window: MainWindow, urls: str, **fields) -> None:
    """What OK in the settings dialog does: the window's settings, saved."""
    window.ai.settings = ModelSettings(threads=1, rationale_tokens=16, server_urls=urls,
                                       **fields).checked()
    save_settings(window.ai.settings)


def _stored(window: MainWindow, pass_name: str = FAST) -> list[int]:
    store = SuggestionStore(window.session.study)
    missing = store.missing_epochs(SuggestionKey(REMOTE_ID, RENDERER_VERSION, pass_name))
    return sorted(set(range(N_EPOCHS)) - set(missing))


# ------------------------------------------------------------------ (a) the settings file
def test_server_settings_round_trip_and_bad_values_reset():
    defaults = load_settings()
    assert (defaults.server_urls, defaults.server_parallel, defaults.server_grammar) == \
        ("", SERVER_PARALLEL_DEFAULT, True)
    assert defaults.server_list() == []

    save_settings(ModelSettings(threads=2, server_urls=" http://lab1:8080/,https://lab2.example/v1 "
                                                       "http://lab1:8080  ",
                                server_parallel=3, server_grammar=False))
    saved = json.loads(settings_path().read_text(encoding="utf-8"))
    assert saved["server_urls"] == "http://lab1:8080, https://lab2.example"
    back = load_settings()
    assert (back.threads, back.server_parallel, back.server_grammar) == (2, 3, False)
    assert back.server_list() == ["http://lab1:8080", "https://lab2.example"]
    assert back.runtime_options()["n_threads"] == 2        # the embedded runtime's are kept

    for raw, expected in [
        ({"server_urls": "localhost:8080", "server_parallel": 0, "server_grammar": "no"},
         ("", 1, True)),
        ({"server_urls": "http://ok:1 ftp://bad", "server_parallel": 100000},
         ("", 256, True)),
        ({"server_urls": 42, "server_parallel": "lots", "server_grammar": 0},
         ("", SERVER_PARALLEL_DEFAULT, True)),
        ({"server_urls": "http://u:pw@lab:8080", "server_parallel": "16"}, ("", 16, True)),
        ({"server_urls": "http://lab:8080/v1/", "server_grammar": False},
         ("http://lab:8080", SERVER_PARALLEL_DEFAULT, False)),
    ]:
        settings_path().write_text(json.dumps(raw), encoding="utf-8")
        odd = load_settings()
        assert (odd.server_urls, odd.server_parallel, odd.server_grammar) == expected, raw


# ------------------------------------------------------------------ (b) the dialog
def test_the_dialog_refuses_a_malformed_server_address(qtbot):
    window = MainWindow(scorer="amy")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    before = settings_path().read_bytes()
    dialog = window.ai.open_settings()
    assert isinstance(dialog, SettingsDialog) and dialog.isVisible()
    assert dialog.server_urls.placeholderText() == SERVER_PLACEHOLDER
    assert dialog.server_parallel.value() == SERVER_PARALLEL_DEFAULT
    assert dialog.server_grammar.isChecked()
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)

    for bad in ("localhost:8080", "http://lab:8080?key=1", "http://me:secret@lab:8080",
                "http://lab1:8080, gopher://lab2"):
        dialog.server_urls.clear()
        qtbot.keyClicks(dialog.server_urls, bad)
        assert not dialog.server_error.isVisible()
        ok.click()
        assert dialog.isVisible(), bad                   # refused: the dialog stays open
        assert dialog.server_error.isVisible()
        problem = dialog.server_error.text()
        assert problem and "\n" not in problem
        assert settings_path().read_bytes() == before    # nothing saved
        assert window.ai.settings.server_urls == ""
    assert "gopher://lab2" in problem and "http(s)" in problem

    qtbot.keyClick(dialog.server_urls, Qt.Key.Key_Backspace)   # editing clears the message
    assert not dialog.server_error.isVisible()
    dialog.server_urls.clear()
    qtbot.keyClicks(dialog.server_urls, "http://lab1:8080/ http://lab2:8080")
    dialog.server_parallel.setValue(4)
    dialog.server_grammar.setChecked(False)
    ok.click()
    assert not dialog.isVisible()
    saved = load_settings()
    assert (saved.server_urls, saved.server_parallel, saved.server_grammar) == \
        ("http://lab1:8080, http://lab2:8080", 4, False)
    assert window.ai.settings == saved

    # Restore defaults empties the server field (the embedded model again)
    dialog = window.ai.open_settings()
    assert dialog.server_urls.text() == "http://lab1:8080, http://lab2:8080"
    dialog.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).click()
    assert dialog.server_urls.text() == "" and dialog.server_grammar.isChecked()
    dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel).click()
    assert load_settings() == saved


# ------------------------------------------------------------------ (c) a night through the server
def test_the_window_scores_a_night_through_the_lab_server(qtbot, server, night, tiny_pack,
                                                          errors):
    window = open_window(qtbot, night)
    _use_server(window, server, server_parallel=2)
    controller = window.ai.controller
    with qtbot.waitSignal(controller.model_loaded, timeout=LOAD_MS) as loaded:
        assert window.load_model(tiny_pack)
    label = loaded.args[0]
    assert label == f"{ALIAS} at {server}"
    assert controller.model_id == REMOTE_ID and controller.pack_dir == str(tiny_pack.absolute())
    assert label in window.ai_panel.model_label.text()
    assert window.ai_panel.text() == NOT_SCORED_TEXT
    servers = controller.worker.runtime.runtimes
    assert [s.base_url for s in servers] == [server] and servers[0].use_grammar

    # the request threads ScoringRun keeps for parallel requests, watched from the GUI thread
    pool_threads: set[str] = set()

    def look() -> None:
        pool_threads.update(t.name for t in threading.enumerate()
                            if t.name.startswith(POOL_THREAD_PREFIX))

    timer = QTimer()
    timer.timeout.connect(look)
    timer.start(10)
    ended: list = []                                   # the summary, or the failure's line
    controller.finished.connect(ended.append)
    controller.failed.connect(ended.append)
    window.menu_actions["score_night"].trigger()
    qtbot.waitUntil(lambda: bool(ended), timeout=RUN_MS)
    timer.stop()
    summary = ended[0]
    assert not isinstance(summary, str), summary
    assert errors == []
    assert summary.outcome == "completed" and summary.model_id == REMOTE_ID
    assert summary.stored[FAST] == N_EPOCHS and summary.model_calls == N_EPOCHS
    assert len(pool_threads) == 2, pool_threads       # parallel=2 reached the run
    assert _stored(window) == list(range(N_EPOCHS))
    store = SuggestionStore(window.session.study)
    answers = store.all_for(SuggestionKey(REMOTE_ID, RENDERER_VERSION))
    assert sorted(answers) == list(range(N_EPOCHS))
    assert all(a.stage is not None for a in answers.values())     # the grammar held
    assert window.hypnogram.suggestions() == [answers[e].stage for e in range(N_EPOCHS)]
    started = [e.payload for e in window.session.study.audit_events()
               if e.kind == AI_RUN_STARTED]
    assert [(p["model_id"], p["model_label"]) for p in started] == [(REMOTE_ID, label)]

    # explain on demand: one remote request from the worker thread, stored as the rationale
    window.go_to(2)
    with qtbot.waitSignal(controller.explained, timeout=RUN_MS) as blocker:
        qtbot.keyClick(window, Qt.Key.Key_E)
    assert blocker.args == [2, ""]
    assert _stored(window, RATIONALE) == [2]
    explained = store.get(2, SuggestionKey(REMOTE_ID, RENDERER_VERSION))
    assert window.ai_panel.rationale.toPlainText() == clinical_units(explained.rationale)
    assert errors == [] and window.session.study.verify().ok


# ------------------------------------------------------------------ (d) a server that fails
def test_an_unreachable_or_refusing_server_is_one_line_and_the_window_goes_on(
        qtbot, server, night, tiny_pack, errors, monkeypatch):
    window = open_window(qtbot, night)
    controller = window.ai.controller
    nobody = f"http://127.0.0.1:{free_port()}"
    _use_server(window, nobody)
    assert window.load_model(tiny_pack)
    qtbot.waitUntil(lambda: bool(errors), timeout=LOAD_MS)
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith(f"{nobody}: cannot reach the AI server")
    assert not controller.has_model and not controller.busy
    assert window.ai_panel.text() == NO_MODEL_TEXT
    assert not window.menu_actions["score_night"].isEnabled()
    assert window.menu_actions["load_model"].isEnabled()

    # manual scoring goes on
    qtbot.keyClick(window, Qt.Key.Key_2)
    decisions = window.session.study.decisions()
    assert [(d.epoch, d.stage, d.source) for d in decisions] == [(0, Stage.N2, MANUAL)]

    # a wrong API key: one line saying so
    monkeypatch.setenv(API_KEY_ENV, "not-the-key")
    _use_server(window, server)
    assert window.load_model(tiny_pack)
    qtbot.waitUntil(lambda: len(errors) == 2, timeout=LOAD_MS)
    assert "\n" not in errors[1] and errors[1].startswith(f"{server}: ")
    assert "check the API key" in errors[1] and not controller.has_model

    # the right key, the grammar off: the same window loads the model after all
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    _use_server(window, server, server_grammar=False)
    with qtbot.waitSignal(controller.model_loaded, timeout=LOAD_MS):
        assert window.load_model(tiny_pack)
    assert controller.model_id == REMOTE_ID and len(errors) == 2
    assert not controller.worker.runtime.runtimes[0].use_grammar
    assert window.menu_actions["score_night"].isEnabled()
