"""The model off the GUI thread: loading a pack, scoring the night, explaining one epoch.

``ModelWorker`` is a QObject moved to its own QThread. Everything slow happens there:
``LocalRuntime`` (pack verification, model load), the whole-night ``ScoringRun`` and the
on-demand rationale for the epoch on screen. It opens its own Recording and Study
connections, so the window's session is never touched from two threads.

With lab servers in the settings (``server_urls``) the pack is still verified here (its prompt
and rule vocabulary), but the model is a ``RemotePool`` of those servers: loading asks each for
its model list, so an unreachable server fails the load with one line, and a night run keeps
``server_parallel`` requests in flight.

Explain requests go into a thread-safe queue. While a night run is going the epoch on screen
preempts it: the request sets ``interrupt``, the embedded model gives up the background request
in progress (before its next token, or between the prompt's images), the run lets the worker
answer the queue (``ScoringRun(on_interrupted=...)``) and asks for its epoch again. With a lab
server (requests in flight cannot be called back) the queue is answered between answers. When
the worker is idle a queued signal wakes it. Pause holds the
run between epochs (explain requests are still answered while paused); Cancel stops it before
the next epoch. Both are ``threading.Event`` s, set from the GUI thread.

``ModelController`` lives in the GUI thread: it owns the thread, forwards requests and
re-emits the worker's signals there.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from ..core.model.settings import RATIONALE_TOKENS_DEFAULT, ModelSettings, open_runtime
from ..core.pipeline.scoring_run import ScoringRun
from ..core.signals.montage import Montage
from ..core.signals.recording import Recording
from ..core.signals.render import RENDERER_VERSION
from ..core.study.suggestions import RATIONALE, SuggestionKey
from ..errors import InputError

_WAKE_POLL_S = 0.1
SERVER_TIMEOUT_S = 300.0                # one request (a long rationale on a busy server)


@dataclass(frozen=True)
class RunTarget:
    """What to score: the recording, its study, the montage to draw with, who asked."""

    recording_path: Path
    study_path: Path
    montage: Montage
    actor: str

    @classmethod
    def of(cls, session) -> "RunTarget":
        return cls(Path(session.recording.path), Path(session.study.path), session.montage,
                   session.scorer)


@dataclass(frozen=True)
class _ExplainRequest:
    target: RunTarget
    epoch: int
    max_tokens: int


def one_line(what: str | Path, error: BaseException) -> str:
    """An error as one line for the user: InputError as written, anything else with ``what``."""
    if isinstance(error, InputError):
        return str(error)
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{what}: {text} ({type(error).__name__})"


class ModelWorker(QObject):
    """Runs in its own QThread (see the module docstring)."""

    model_loaded = Signal(str, str, str, str)   # model id, label, pack folder, renderer version
    model_failed = Signal(str)               # one line
    progress = Signal(int, int, object)      # epochs done, epochs to do, seconds left or None
    pass_started = Signal(str)               # FAST or RATIONALE: the run's pass from now on
    suggestion_ready = Signal(int, str)      # epoch, study path
    explained = Signal(int, str, str)        # epoch, study path, problem ("" when answered)
    held = Signal(bool)                      # True while Pause holds the run
    finished = Signal(object)                # RunSummary
    failed = Signal(str)                     # one line: the run stopped on an error

    def __init__(self):
        super().__init__()
        self.pause_event = threading.Event()
        self.cancel_event = threading.Event()
        self._wake = threading.Event()
        self.interrupt = threading.Event()       # set: the run's request gives way to Explain
        self._requests: queue.Queue[_ExplainRequest] = queue.Queue()
        self.runtime = None
        self._recording: Recording | None = None
        self._run: ScoringRun | None = None      # the last run: Explain reuses its rendered images

    # -- called from the GUI thread (thread-safe) ----------------------------------------
    def request_explanation(self, target: RunTarget, epoch: int, max_tokens: int) -> None:
        self._requests.put(_ExplainRequest(target, int(epoch), int(max_tokens)))
        self.interrupt.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # -- slots (worker thread) -----------------------------------------------------------
    @Slot(str, object)
    def load_model(self, pack_dir: str, settings: ModelSettings) -> None:
        self.release()
        try:
            runtime = open_runtime(pack_dir, settings, request_timeout_s=SERVER_TIMEOUT_S)
            model_id = runtime.model_id
            pack = getattr(runtime, "pack_dir", None) or Path(pack_dir).absolute()
        except Exception as error:  # noqa: BLE001 - every failure becomes one line
            self.model_failed.emit(one_line(pack_dir, error))
            return
        self.runtime = runtime
        self.model_loaded.emit(str(model_id), str(runtime.label), str(pack),
                               str(getattr(runtime, "renderer_version", RENDERER_VERSION)))

    @Slot(object, object)
    def score_night(self, target: RunTarget, settings: ModelSettings) -> None:
        self.cancel_event.clear()
        if self.runtime is None:
            self.failed.emit("No model loaded: load a model pack first")
            return
        try:
            recording = self._recording_for(target.recording_path)
            whole = settings.rationale_whole_night
            runtime = self.runtime
            parallel = settings.server_parallel if getattr(runtime, "concurrent_requests", False) else 1
            study_path = str(target.study_path)

            def on_stored(epoch: int, _pass_name: str) -> None:
                self.suggestion_ready.emit(epoch, study_path)

            run = ScoringRun(recording, target.montage, target.study_path, runtime,
                             rationale="all" if whole else "none", actor=target.actor,
                             max_tokens={RATIONALE: settings.rationale_tokens},
                             parallel=parallel, on_stored=on_stored,
                             interrupt=self.interrupt, on_interrupted=self._serve_requests)
            self._run = run
            passes = []

            def on_progress(done: int, total: int, eta_s: float | None) -> None:
                if run.current_pass not in passes:
                    passes.append(run.current_pass)
                    self.pass_started.emit(run.current_pass)
                self.progress.emit(done, total, eta_s)
                self._serve_requests()
                self._hold_while_paused()

            summary = run.run(progress=on_progress, cancel_event=self.cancel_event)
        except Exception as error:  # noqa: BLE001 - the run's failure is one line for the user
            self.failed.emit(one_line(target.recording_path, error))
        else:
            self.finished.emit(summary)

    @Slot()
    def serve_requests(self) -> None:
        self._serve_requests()

    def release(self) -> None:
        """Free the model and the recording (worker thread, or after the thread has ended)."""
        self._run = None
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            runtime.close()
        recording, self._recording = self._recording, None
        if recording is not None:
            recording.close()

    # -- internals -----------------------------------------------------------------------
    def _recording_for(self, path: Path) -> Recording:
        if self._recording is not None and Path(self._recording.path) == Path(path).absolute():
            return self._recording
        if self._recording is not None:
            self._recording.close()
            self._recording = None
        self._recording = Recording.open(path)
        return self._recording

    def _run_for(self, target: RunTarget) -> ScoringRun:
        """The run of ``target`` with this model (the night's, or the last Explain's), so that
        Explain uses the images already rendered; a new one for another study or montage."""
        recording = self._recording_for(target.recording_path)
        run = self._run
        if (run is None or run.recording is not recording or run.runtime is not self.runtime
                or run.study_path != Path(target.study_path) or run.montage != target.montage):
            run = ScoringRun(recording, target.montage, target.study_path, self.runtime,
                             actor=target.actor)
            self._run = run
        return run

    def _hold_while_paused(self) -> None:
        if not self.pause_event.is_set() or self.cancel_event.is_set():
            return
        self.held.emit(True)
        while self.pause_event.is_set() and not self.cancel_event.is_set():
            self._serve_requests()
            self._wake.wait(_WAKE_POLL_S)
            self._wake.clear()
        self.held.emit(False)

    def _serve_requests(self) -> None:
        self.interrupt.clear()          # what it was set for is answered now
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                self.interrupt.clear()      # set by a request answered above: nothing waits
                if self._requests.empty():
                    return
                continue                    # one came between the two looks
            problem = self._explain(request)
            self.explained.emit(request.epoch, str(request.target.study_path), problem)

    def _explain(self, request: _ExplainRequest) -> str:
        """Ask the model for the rationale of one epoch and store it; the problem or ""."""
        if self.runtime is None:
            return "no model loaded"
        target, epoch = request.target, request.epoch
        try:
            self._run_for(target).explain(
                epoch, max_tokens=request.max_tokens or RATIONALE_TOKENS_DEFAULT)
        except InputError as error:   # about this epoch ("epoch 5 has no signal to explain")
            return error.problem
        except Exception as error:  # noqa: BLE001 - one line for the user, the worker goes on
            return one_line(target.recording_path, error)
        self.suggestion_ready.emit(epoch, str(target.study_path))
        return ""


class ModelController(QObject):
    """The GUI thread's handle on the worker: one model, one job at a time.

    Signals are re-emitted in the GUI thread; ``suggestion_ready`` and ``explained`` only for
    the study set with ``set_study`` (the one on screen).
    """

    model_loaded = Signal(str)               # label
    model_failed = Signal(str)
    progress = Signal(int, int, object)
    pass_started = Signal(str)
    suggestion_ready = Signal(int)
    explained = Signal(int, str)             # epoch, problem ("" when answered)
    held = Signal(bool)
    finished = Signal(object)
    failed = Signal(str)
    busy_changed = Signal(bool)

    _load = Signal(str, object)
    _score = Signal(object, object)
    _serve = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.thread: QThread | None = None
        self.worker: ModelWorker | None = None
        self.model_id: str | None = None
        self.model_label: str | None = None
        self.pack_dir: str | None = None
        self.renderer_version: str = RENDERER_VERSION   # the loaded pack's pixels (its key)
        self.loading = False
        self.running = False
        self.is_held = False
        self._study: Path | None = None

    # -- state -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.loading or self.running

    @property
    def has_model(self) -> bool:
        return self.model_id is not None

    @property
    def key(self) -> SuggestionKey | None:
        """The loaded model's answers (model and renderer, both passes); None without one."""
        return None if self.model_id is None else SuggestionKey(self.model_id, self.renderer_version)

    @property
    def paused(self) -> bool:
        return self.worker is not None and self.worker.pause_event.is_set()

    def set_study(self, study_path: str | Path | None) -> None:
        self._study = None if study_path is None else Path(study_path)

    # -- requests --------------------------------------------------------------------------
    def load_model(self, pack_dir: str | Path, settings: ModelSettings) -> bool:
        """Start loading a pack (the current model is freed first); False while busy."""
        if self.busy:
            return False
        self._ensure_thread()
        self.model_id = self.model_label = self.pack_dir = None
        self._set_busy(loading=True)
        self._load.emit(str(pack_dir), settings)
        return True

    def score_night(self, target: RunTarget, settings: ModelSettings) -> bool:
        if self.busy or not self.has_model:
            return False
        self._set_busy(running=True)
        self._score.emit(target, settings)
        return True

    def explain(self, target: RunTarget, epoch: int, max_tokens: int) -> bool:
        if not self.has_model or self.loading:
            return False
        self.worker.request_explanation(target, epoch, max_tokens)
        self._serve.emit()
        return True

    def pause(self) -> None:
        if self.worker is not None:
            self.worker.pause_event.set()

    def resume(self) -> None:
        if self.worker is not None:
            self.worker.pause_event.clear()
            self.worker.wake()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel_event.set()
            self.worker.wake()

    def shutdown(self, wait_ms: int = 120000) -> None:
        """Stop the run, end the thread and free the model (the window is closing)."""
        thread, worker = self.thread, self.worker
        if thread is None:
            return
        self.cancel()
        worker.pause_event.clear()
        thread.quit()
        thread.wait(wait_ms)
        worker.release()
        self.thread = self.worker = None
        self.model_id = self.model_label = None
        self.loading = self.running = False

    # -- internals -------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self.thread is not None:
            return
        thread = QThread()
        thread.setObjectName("sleepvlm-model")
        worker = ModelWorker()
        worker.moveToThread(thread)
        self._load.connect(worker.load_model)
        self._score.connect(worker.score_night)
        self._serve.connect(worker.serve_requests)
        worker.model_loaded.connect(self._on_model_loaded)
        worker.model_failed.connect(self._on_model_failed)
        worker.progress.connect(self.progress)
        worker.pass_started.connect(self.pass_started)
        worker.suggestion_ready.connect(self._on_suggestion_ready)
        worker.explained.connect(self._on_explained)
        worker.held.connect(self._on_held)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self.thread, self.worker = thread, worker
        app = QCoreApplication.instance()
        if app is not None:     # a window never closed must not leave the thread running
            app.aboutToQuit.connect(self.shutdown)
        thread.start()

    def _set_busy(self, *, loading: bool = False, running: bool = False) -> None:
        before = self.busy
        self.loading, self.running = loading, running
        if self.busy != before:
            self.busy_changed.emit(self.busy)

    def _mine(self, study_path: str) -> bool:
        return self._study is not None and Path(study_path) == self._study

    @Slot(str, str, str, str)
    def _on_model_loaded(self, model_id: str, label: str, pack_dir: str, renderer: str) -> None:
        self.model_id, self.model_label, self.pack_dir = model_id, label, pack_dir
        self.renderer_version = renderer
        self._set_busy()
        self.model_loaded.emit(label)

    @Slot(str)
    def _on_model_failed(self, message: str) -> None:
        self._set_busy()
        self.model_failed.emit(message)

    @Slot(int, str)
    def _on_suggestion_ready(self, epoch: int, study_path: str) -> None:
        if self._mine(study_path):
            self.suggestion_ready.emit(epoch)

    @Slot(int, str, str)
    def _on_explained(self, epoch: int, study_path: str, problem: str) -> None:
        if self._mine(study_path):
            self.explained.emit(epoch, problem)

    @Slot(bool)
    def _on_held(self, held: bool) -> None:
        self.is_held = held
        self.held.emit(held)

    def _end_run(self) -> None:
        if self.worker is not None:
            self.worker.pause_event.clear()
        self.is_held = False
        self._set_busy()

    @Slot(object)
    def _on_finished(self, summary) -> None:
        self._end_run()
        self.finished.emit(summary)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._end_run()
        self.failed.emit(message)
