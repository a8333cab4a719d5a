"""Helpers for tests that drive the real main window (offscreen)."""

from __future__ import annotations

from pathlib import Path

from sleepvlm_ws.ui.main_window import MainWindow


def open_window(qtbot, recording: Path, scorer="alice") -> MainWindow:
    """A shown main window with ``recording`` loaded through the background loader."""
    window = MainWindow(scorer=scorer)
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    assert window.open_recording(recording)
    qtbot.waitUntil(lambda: window.session is not None, timeout=15000)
    return window
