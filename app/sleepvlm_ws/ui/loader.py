"""Open a recording and its study off the GUI thread.

``RecordingLoader.load(...)`` runs ``ReviewSession.open`` in a QThread and answers with
``loaded(session)`` or ``failed(message)`` (always a one-line message naming the file).
The loader lives in the GUI thread, so its signals reach the window there.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..core.review.session import ReviewSession
from ..errors import InputError


def describe_failure(path: str | Path, error: BaseException) -> str:
    """One line for the user: InputError as written, anything else with the file named."""
    if isinstance(error, InputError):
        return str(error)
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{path}: could not be opened ({type(error).__name__}: {text})"


class _OpenWorker(QObject):
    done = Signal(object)
    error = Signal(str)

    def __init__(self, recording: str, study: str | None, scorer: str):
        super().__init__()
        self.recording, self.study, self.scorer = recording, study, scorer

    @Slot()
    def run(self) -> None:
        try:
            session = ReviewSession.open(self.recording, study_path=self.study, scorer=self.scorer)
        except Exception as error:  # noqa: BLE001 - every failure becomes one line for the user
            self.error.emit(describe_failure(self.recording, error))
        else:
            self.done.emit(session)


class RecordingLoader(QObject):
    """One load at a time; ``busy`` while a thread is running."""

    loaded = Signal(object)      # ReviewSession
    failed = Signal(str)         # one-line message

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: _OpenWorker | None = None
        self.path: str | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def load(self, recording: str | Path, study: str | Path | None = None,
             scorer: str = "technologist") -> bool:
        """Start opening; False (and nothing started) if a load is already running."""
        if self.busy:
            return False
        self.path = str(recording)
        thread = QThread()
        worker = _OpenWorker(str(recording), None if study is None else str(study), scorer)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.done.connect(self._on_done)
        worker.error.connect(self._on_error)
        self._thread, self._worker = thread, worker
        thread.start()
        return True

    def _finish(self) -> None:
        thread, self._thread, self._worker = self._thread, None, None
        if thread is not None:
            thread.quit()
            thread.wait()

    @Slot(object)
    def _on_done(self, session) -> None:
        self._finish()
        self.loaded.emit(session)

    @Slot(str)
    def _on_error(self, message: str) -> None:
        self._finish()
        self.failed.emit(message)

    def wait(self, ms: int = 30000) -> None:
        """Block until a running load ends (window closing); its result is then dropped."""
        thread = self._thread
        if thread is not None:
            thread.quit()
            thread.wait(ms)
