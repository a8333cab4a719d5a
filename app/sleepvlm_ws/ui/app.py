"""Start the workstation GUI."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QTimer
from PySide6.QtWidgets import QApplication

from ..paths import default_scorer
from .main_window import APP_NAME, MainWindow

EXIT_OK, EXIT_INPUT_ERROR = 0, 2
SETTLE_MS = 300          # let the first epoch paint before a screenshot


FIRST_SUGGESTIONS = 3     # an unattended scoring demo waits for this many before its screenshot


def run_gui(recording: str | None = None, study: str | None = None, scorer: str | None = None,
            *, screenshot: str | None = None, exit_after: float | None = None,
            model: str | None = None, score: bool = False) -> int:
    """Open the main window (and ``recording`` in the background, if given); return the exit code.

    ``model``: a model pack folder, loaded (verified first) in the background; its suggestions
    appear once it is loaded. ``score``: once both the study and the model are in, score the
    whole night in the background (the demo does this); an unattended run then waits for the
    first suggestions before its screenshot.

    Unattended runs (demo, CI): ``screenshot`` saves a PNG of the window once the study (and
    the model, if given) is on screen; ``exit_after`` closes it that many seconds later. In an
    unattended run a recording or model pack that cannot be opened is reported on stderr (no
    dialog to click) and the exit code is 2.
    """
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    window = MainWindow(scorer or default_scorer())
    unattended = exit_after is not None or screenshot is not None
    # Closing the last window also quits the loop (with 0), so remember the code we meant.
    chosen: list[int] = []
    # What must be on screen before the screenshot / the exit timer: the study, the model.
    waiting = {"recording"} | ({"model"} if model else set())
    scoring = bool(score and model and recording)

    def ready(what: str) -> None:
        if what not in waiting:
            return
        waiting.discard(what)
        if scoring and what in ("recording", "model") and not waiting & {"recording", "model"}:
            if window.ai.score_night():
                waiting.add("suggestions")
        if waiting or not recording:
            return
        if screenshot:
            QTimer.singleShot(SETTLE_MS, save_screenshot)
        if exit_after is not None:
            QTimer.singleShot(int(max(exit_after, 0) * 1000) + SETTLE_MS, lambda: quit_with(EXIT_OK))

    def save_screenshot() -> None:
        if not window.grab().save(str(Path(screenshot))):
            print(f"{screenshot}: could not save the screenshot", file=sys.stderr)

    def on_failed(message: str) -> None:
        print(message, file=sys.stderr)
        quit_with(EXIT_INPUT_ERROR)

    def quit_with(code: int) -> None:
        if not chosen:
            chosen.append(code)
        window.close()
        app.exit(code)

    window.loader.loaded.connect(lambda _session: ready("recording"))
    window.ai.controller.model_loaded.connect(lambda _label: ready("model"))
    window.ai.controller.progress.connect(
        lambda done, _total, _eta: done >= FIRST_SUGGESTIONS and ready("suggestions"))
    if unattended:
        window.error_reporter = lambda title, message: on_failed(message)
    window.show()
    if model:
        window.load_model(model)
    if recording:
        window.open_recording(recording, study)
    elif exit_after is not None:
        QTimer.singleShot(int(max(exit_after, 0) * 1000), lambda: quit_with(EXIT_OK))
    code = int(app.exec())
    # Closing the last window also posted a Quit event; left in the queue it would end the
    # next event loop of this process at once (a second run_gui, pytest-qt's waits).
    QCoreApplication.removePostedEvents(app, QEvent.Type.Quit)
    return chosen[0] if chosen else code
