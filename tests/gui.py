"""Helpers for tests that drive the real main window (offscreen)."""

from __future__ import annotations

from pathlib import Path

from sleepvlm_ws.ui.main_window import MainWindow


def accept_with_enter(qtbot, widget, window: MainWindow) -> None:
    """Enter accepts the suggestion on screen. Where the signal contradicts a rule it cites
    (the tiny test model cites rules at random), the question that comes first is answered
    Yes, as a technologist who checked would."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMessageBox

    qtbot.keyClick(widget, Qt.Key.Key_Return)
    box = window.ai.accept_box
    if box is not None and box.isVisible():
        box.button(QMessageBox.StandardButton.Yes).click()
        window.activateWindow()      # offscreen, no window manager gives the focus back
        qtbot.waitUntil(window.isActiveWindow, timeout=5000)


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
