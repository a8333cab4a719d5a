"""The whole-night AI scoring run: every epoch of a recording through the model, each answer
stored in the study as a suggestion the moment it is produced.

``ScoringRun`` is Qt-free; the CLI runs it in the main thread, the GUI from a worker thread.
It opens its own connection to the study (an SQLite connection belongs to one thread) and
asks the study which epochs still lack an answer for (model id, renderer version, pass), so
a run that crashed, was killed or was cancelled resumes where it stopped and never asks the
model twice for the same epoch. The fast pass (stage + rule IDs) covers the night first;
``rationale="all"`` then adds a second pass asking for the reasoning.

Each request carries three images (preceding, target, following epoch); each image is
rendered once and kept in a small LRU for the two other requests it appears in. An epoch
with no signal in its target window is skipped: nothing stored, counted. The run is audited
once when it starts and once when it ends (``core.study.suggestions``), never per epoch.

With ``parallel`` > 1 (a runtime that serves concurrent requests: ``RemoteRuntime`` in front
of a server with several slots) up to that many requests are in flight at once. Images are
still rendered, and answers still stored, in the run's own thread, as each answer arrives.
Cancel, pause or a failed request lets the requests already sent finish and stores their
answers first; Ctrl-C (or a failure in the run's own thread) stores the answers that have
arrived and does not wait for the rest. A resumed run asks only for what is not stored.

Preemption: with ``interrupt`` (a ``threading.Event``) and a runtime that can give a request
up half-way (``LocalRuntime.interruptible``), setting the event makes the request in progress
give way at once (between prompt chunks, between an image's encoding and its decoding, or
before its next token on the plain greedy path); the run clears the event, calls
``on_interrupted()`` (where the GUI's worker answers Explain for the epoch on screen) and then
asks for the same epoch again, unless that answer was stored meanwhile. Requests in flight to
a server are not interrupted: the run's ``interrupt`` applies to inline requests only, and the
GUI's worker serves its queue from the progress callback, between answers.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ...errors import InputError
from ..model.request import RequestInterrupted
from ..review.session import open_study
from ..signals.montage import Montage
from ..signals.render import RENDERER_VERSION, check_renderer
from ..study.ai_runs import record_run_finished, record_run_started
from ..study.study import Study
from ..study.suggestions import FAST, RATIONALE, SuggestionKey, SuggestionStore
from .epoch_images import IMAGE_CACHE_SIZE, EpochImageCache, read_epoch_window
from .run_eta import ETA_WINDOW, RunEta

__all__ = ["ScoringRun", "RunSummary", "study_montage", "EpochImageCache", "read_epoch_window",
           "RATIONALE_MODES"]

RATIONALE_MODES = ("none", "all")
ACTOR = "sleepvlm-ws"
_PAUSE_POLL_S = 0.1

ProgressCallback = Callable[[int, int, "float | None"], Any]


@dataclass
class RunSummary:
    """What a run did. ``outcome``: completed, cancelled, failed or interrupted (Ctrl-C)."""

    model_id: str
    renderer_version: str
    outcome: str = "failed"
    stored: dict[str, int] = field(default_factory=lambda: {FAST: 0, RATIONALE: 0})
    already_stored: dict[str, int] = field(default_factory=lambda: {FAST: 0, RATIONALE: 0})
    skipped_no_signal: int = 0     # epochs (counted once) with no signal to score
    model_calls: int = 0
    model_seconds: dict[str, float] = field(default_factory=lambda: {FAST: 0.0, RATIONALE: 0.0})
    seconds: float = 0.0           # wall time of the whole run
    epochs_done: int = 0           # epochs handled (scored or skipped) in this run
    epochs_total: int = 0          # epochs this run set out to handle
    images_rendered: int = 0       # epoch images drawn (each serves up to three requests)
    interruptions: int = 0         # requests given up half-way for something more urgent
    gave_way: int = 0              # times the run let something more urgent go first

    def per_epoch_s(self, pass_name: str = FAST) -> float | None:
        """Mean model seconds per scored epoch in ``pass_name`` (None if none was scored)."""
        n = self.stored.get(pass_name, 0)
        return self.model_seconds[pass_name] / n if n else None

    @property
    def key(self) -> SuggestionKey:
        """The run's model and renderer (both passes)."""
        return SuggestionKey(self.model_id, self.renderer_version)

    def counts(self) -> dict:
        """The audit payload's counts."""
        return {"stored": dict(self.stored), "already_stored": dict(self.already_stored),
                "skipped_no_signal": self.skipped_no_signal, "model_calls": self.model_calls,
                "epochs_done": self.epochs_done, "epochs_total": self.epochs_total,
                "images_rendered": self.images_rendered, "interruptions": self.interruptions,
                "gave_way": self.gave_way,
                "seconds": round(self.seconds, 3)}


def study_montage(recording, study_path: str | Path, scorer: str) -> Montage:
    """The montage of the study a run writes into: the study is created (auto montage) when it
    does not exist; one that belongs to another recording is refused (InputError, one line)."""
    with open_study(recording, study_path, scorer=scorer) as study:
        return study.montage


class ScoringRun:
    """Score a recording's epochs with ``runtime`` (``LocalRuntime`` or ``RemoteRuntime``:
    anything with ``model_id`` and ``suggest(images, *, rationale)`` returning a
    ``RuntimeAnswer``), storing each answer in
    the study at ``study_path``. ``run`` may be called from a worker thread: it opens its own
    study connection there, and calls ``progress`` from that thread (a GUI forwards it to its
    own thread with a queued signal).

    ``epochs``: which epochs (default all). ``rationale``: "none" (fast pass only) or "all"
    (then a second pass adds the reasoning). ``actor``: who the audit events name.
    ``max_tokens``: pass -> new-token budget, where the runtime's default (128 fast, 1024
    with the rationale) is not wanted; an answer cut short is stored flagged ``truncated``.
    ``parallel``: requests in flight at once (1: one after another). More than one needs a
    runtime that says ``concurrent_requests = True`` (the embedded llama.cpp does not).
    ``on_stored(epoch, pass_name)``: called (in the run's thread) after each answer is stored,
    by ``run`` and by ``explain``: a view learns of new suggestions without asking the study.
    ``interrupt`` and ``on_interrupted()``: preemption (see the module docstring); both or
    neither.
    """

    def __init__(self, recording, montage: Montage, study_path: str | Path, runtime, *,
                 rationale: str = "none", epochs: Iterable[int] | None = None,
                 actor: str = ACTOR, image_cache_size: int = IMAGE_CACHE_SIZE,
                 max_tokens: dict[str, int] | None = None, parallel: int = 1,
                 on_stored: Callable[[int, str], None] | None = None,
                 interrupt: threading.Event | None = None,
                 on_interrupted: Callable[[], None] | None = None):
        if rationale not in RATIONALE_MODES:
            raise ValueError(f"rationale must be one of {', '.join(RATIONALE_MODES)}, "
                             f"not {rationale!r}")
        if not isinstance(montage, Montage):
            raise TypeError("montage must be a Montage")
        self.recording = recording
        self.montage = montage
        self.study_path = Path(study_path)
        self.runtime = runtime
        self.rationale = rationale
        self.epochs = None if epochs is None else sorted(set(int(e) for e in epochs))
        self.actor = actor
        self.image_cache_size = image_cache_size
        self.passes = (FAST, RATIONALE) if rationale == "all" else (FAST,)
        self.max_tokens = dict(max_tokens or {})
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
            raise ValueError(f"parallel must be a whole number of 1 or more, not {parallel!r}")
        if parallel > 1 and not getattr(runtime, "concurrent_requests", False):
            raise ValueError(f"{type(runtime).__name__} answers one request at a time: "
                             f"parallel must be 1")
        self.parallel = parallel
        self.on_stored = on_stored
        if (interrupt is None) != (on_interrupted is None):
            raise ValueError("interrupt and on_interrupted go together")
        self.interrupt = interrupt
        self.on_interrupted = on_interrupted
        # the pixels the pack was trained on (its manifest); answers are stored under them
        self.renderer_version = check_renderer(getattr(runtime, "renderer_version", RENDERER_VERSION))
        self.summary: RunSummary | None = None
        self._images: EpochImageCache | None = None
        self._scorer: _PassScorer | None = None

    @property
    def current_pass(self) -> str | None:
        """The pass being scored (FAST or RATIONALE); None before ``run``."""
        return None if self._scorer is None else self._scorer.current_pass

    def run(self, progress: ProgressCallback | None = None,
            pause_event: threading.Event | None = None,
            cancel_event: threading.Event | None = None, *,
            study: Study | None = None) -> RunSummary:
        """Score what is still missing; return what was done.

        Parameters
        ----------
        progress : callable, optional
            ``progress(done, total, eta_s)`` after each epoch (eta_s None until there is
            something to go by).
        pause_event, cancel_event : threading.Event, optional
            While ``pause_event`` is set the run holds; setting ``cancel_event`` stops it before
            the next epoch.
        study : Study, optional
            The study at ``study_path``, already open in this thread (the CLI opens it once);
            left open. Default: the run opens its own connection and closes it.

        Returns
        -------
        RunSummary
        """
        started = time.monotonic()
        model_id = str(self.runtime.model_id)
        summary = RunSummary(model_id, self.renderer_version)
        self.summary = summary
        study, own = self._open_study(study)
        try:
            store = SuggestionStore(study)
            n_epochs = min(study.n_epochs, int(self.recording.n_epochs))
            wanted = [e for e in (self.epochs if self.epochs is not None else range(n_epochs))
                      if 0 <= e < n_epochs]
            todo = {p: store.missing_epochs(summary.key.for_pass(p), wanted)
                    for p in self.passes}
            for p in self.passes:
                summary.already_stored[p] = len(wanted) - len(todo[p])
            summary.epochs_total = sum(len(v) for v in todo.values())
            record_run_started(study, summary.key, passes=self.passes,
                               epochs_to_score={p: len(v) for p, v in todo.items()},
                               actor=self.actor,
                               details={"epochs_requested": len(wanted),
                                        "model_label": str(getattr(self.runtime, "label", "")
                                                           or model_id)})
            try:
                self._score(store, n_epochs, todo, summary, progress, pause_event, cancel_event)
            except BaseException as exc:
                summary.outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                summary.seconds = time.monotonic() - started
                _log_end_quietly(study, summary, self.actor)
                raise
            summary.seconds = time.monotonic() - started
            record_run_finished(study, summary.key, outcome=summary.outcome,
                                counts=summary.counts(), actor=self.actor)
        finally:
            if own:
                study.close()
        return summary

    def explain(self, epoch: int, *, study: Study | None = None,
                max_tokens: int | None = None) -> bool:
        """Ask for the rationale of one epoch (the Explain button) and store it. Call it from
        the thread that calls ``run`` (between epochs, e.g. in its progress callback), never
        from another thread while ``run`` is going: the image cache and the recording are
        not shared across threads.

        Parameters
        ----------
        epoch : int
            The epoch (0-based).
        study : Study, optional
            The study at ``study_path``, open in this thread; default: opened and closed here.
        max_tokens : int, optional
            The rationale's new-token budget (default: this run's, else the runtime's).

        Returns
        -------
        bool
            True when a rationale was asked for and stored; False when one was already stored
            for this model and renderer (nothing asked).

        Raises
        ------
        InputError
            The epoch is outside the recording or has no signal to explain (one line).
        """
        study, own = self._open_study(study)
        try:
            n_epochs = min(study.n_epochs, int(self.recording.n_epochs))
            if not 0 <= int(epoch) < n_epochs:
                raise InputError(self.study_path, f"epoch {int(epoch) + 1} is outside 1..{n_epochs}")
            store = SuggestionStore(study)
            key = SuggestionKey(str(self.runtime.model_id), self.renderer_version, RATIONALE)
            if store.get_pass(epoch, key) is not None:
                return False
            images = self._image_cache()
            if not images.get(epoch)[1]:
                raise InputError(self.recording.path, f"epoch {epoch + 1} has no signal to explain")
            budget = max_tokens or self.max_tokens.get(RATIONALE)
            request = images.request_images(epoch, n_epochs)
            answer = (self.runtime.suggest(request, rationale=True, max_tokens=budget) if budget
                      else self.runtime.suggest(request, rationale=True))
            stored = _put(store, epoch, answer, key)
            if stored and self.on_stored is not None:
                self.on_stored(epoch, RATIONALE)
            return stored
        finally:
            if own:
                study.close()

    # -- internals ---------------------------------------------------------------------
    def _open_study(self, study: Study | None) -> tuple[Study, bool]:
        """(the study to write into, whether this call opened it and must close it)."""
        if study is None:
            return Study.open(self.study_path), True
        if Path(study.path).resolve() != self.study_path.resolve():
            raise ValueError(f"the open study is {study.path}, not this run's {self.study_path}")
        return study, False

    def _image_cache(self) -> EpochImageCache:
        if self._images is None:
            self._images = EpochImageCache(self.recording, self.montage, self.image_cache_size,
                                           self.renderer_version)
        return self._images

    def _score(self, store, n_epochs, todo, summary, progress, pause_event, cancel_event):
        images = self._image_cache()
        pool = (ThreadPoolExecutor(self.parallel, thread_name_prefix="sleepvlm-request")
                if self.parallel > 1 else None)
        scorer = self._scorer = _PassScorer(self, store, n_epochs, summary, images, pool, progress)
        try:
            scorer.run_all(todo, pause_event, cancel_event)
        except BaseException:
            # Ctrl-C, or a failure in this thread (reading, rendering, storing): keep the
            # answers that have already arrived, do not wait for the others
            scorer.salvage()
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        if pool is not None:
            pool.shutdown(wait=True)

    def _ask(self, request, pass_name: str, interrupt: threading.Event | None = None):
        options = {}
        if pass_name in self.max_tokens:
            options["max_tokens"] = self.max_tokens[pass_name]
        if interrupt is not None:
            options["interrupt"] = interrupt
        return self.runtime.suggest(request, rationale=pass_name == RATIONALE, **options)


class _PassScorer:
    """The epochs of each pass: rendered and stored here, asked inline or through ``pool``."""

    def __init__(self, run: ScoringRun, store, n_epochs, summary, images, pool, progress):
        self.run, self.store, self.n_epochs, self.summary = run, store, n_epochs, summary
        self.images, self.pool, self.progress = images, pool, progress
        self.renders_before = images.renders    # the cache outlives one run (explain, reruns)
        self.eta = RunEta(max(ETA_WINDOW, 2 * run.parallel))
        self.left: dict[str, int] = {}
        self.current_pass = FAST
        self.no_signal: set[int] = set()
        self.inflight: dict[Future, int] = {}
        self.last_done = time.monotonic()

    def run_all(self, todo, pause_event, cancel_event) -> None:
        summary = self.summary
        self.left = {p: len(v) for p, v in todo.items()}
        for i, pass_name in enumerate(self.run.passes):
            self.current_pass = pass_name
            if self.progress is not None and (i == 0 or todo[pass_name]):
                # once at the start, and as a pass begins: the pass is named before its first answer
                self.progress(summary.epochs_done, summary.epochs_total,
                              None if i == 0 else self.eta.estimate(self.left))
            self.last_done = time.monotonic()
            for epoch in todo[pass_name]:
                if self.inflight and ((pause_event is not None and pause_event.is_set())
                                      or (cancel_event is not None and cancel_event.is_set())):
                    self.drain()
                paused = pause_event is not None and pause_event.is_set()
                if _held(pause_event, cancel_event):
                    self.drain()
                    summary.outcome = "cancelled"
                    return
                if paused:
                    self.last_done = time.monotonic()   # a pause is not scoring time
                has_signal = self.images.get(epoch)[1]
                summary.images_rendered = self.images.renders - self.renders_before
                if not has_signal:
                    self.no_signal.add(epoch)
                    summary.skipped_no_signal = len(self.no_signal)
                    self.done(epoch, None)
                    continue
                request = self.images.request_images(epoch, self.n_epochs)
                summary.images_rendered = self.images.renders - self.renders_before
                if self.pool is None:
                    self.done(epoch, self.ask_inline(request, pass_name, epoch))
                    continue
                self.inflight[self.pool.submit(self.run._ask, request, pass_name)] = epoch
                if len(self.inflight) >= self.run.parallel:
                    finished, _ = wait(self.inflight, return_when=FIRST_COMPLETED)
                    self.collect(finished)
            self.drain()
        summary.outcome = "completed"

    def ask_inline(self, request, pass_name: str, epoch: int):
        """Ask in this thread; a request interrupted for something more urgent gives way
        (``on_interrupted``) and is asked again, unless what ran meanwhile (Explain for this
        very epoch) stored this pass's answer: then None, nothing asked twice. The time given
        away is not scoring time."""
        run = self.run
        interrupt = run.interrupt if getattr(run.runtime, "interruptible", False) else None
        gave_way = False
        while True:
            if interrupt is not None and interrupt.is_set():
                self.give_way()
                gave_way = True
            if gave_way and self.store.get_pass(epoch, self.summary.key.for_pass(pass_name)):
                return None
            try:
                return run._ask(request, pass_name, interrupt)
            except RequestInterrupted:
                self.summary.interruptions += 1
                self.give_way()
                gave_way = True

    def give_way(self) -> None:
        """Clear the interrupt and let ``on_interrupted`` run (Explain for the epoch on screen)."""
        run = self.run
        run.interrupt.clear()
        self.summary.gave_way += 1
        given = time.monotonic()
        run.on_interrupted()
        self.last_done += time.monotonic() - given

    def drain(self) -> None:
        """Wait for every request in flight and store its answer."""
        if self.inflight:
            self.collect(list(self.inflight))

    def collect(self, futures) -> None:
        """Store the answers of ``futures`` (in epoch order); if any request failed, wait for
        the rest in flight, store their answers, then raise the first failure."""
        failure = None
        for future in sorted(futures, key=lambda f: self.inflight[f]):
            epoch = self.inflight.pop(future)
            try:
                answer = future.result()
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others
                failure = failure or exc
                continue
            self.done(epoch, answer)
        if failure is not None:
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - the first failure is the one reported
                pass
            raise failure

    def salvage(self) -> None:
        """Store the answers already arrived (without waiting for the others); never raises."""
        arrived = [f for f in self.inflight if f.done() and not f.cancelled()
                   and f.exception() is None]
        for future in sorted(arrived, key=lambda f: self.inflight[f]):
            try:
                self.keep(self.inflight.pop(future), future.result())
            except Exception:  # noqa: BLE001 - the run is already failing; that error is shown
                return

    def keep(self, epoch: int, answer) -> None:
        """Store one answer of the current pass in the study."""
        summary, pass_name = self.summary, self.current_pass
        summary.model_calls += 1
        if _put(self.store, epoch, answer, summary.key.for_pass(pass_name)):
            summary.stored[pass_name] += 1
            summary.model_seconds[pass_name] += float(answer.seconds or 0.0)
            if self.run.on_stored is not None:
                self.run.on_stored(epoch, pass_name)

    def done(self, epoch: int, answer) -> None:
        """One epoch of the current pass handled (``answer`` None: skipped, no signal): store,
        count, report."""
        summary, pass_name = self.summary, self.current_pass
        if answer is not None:
            self.keep(epoch, answer)
        now = time.monotonic()
        self.eta.add(pass_name, now - self.last_done)
        self.last_done = now
        self.left[pass_name] -= 1
        summary.epochs_done += 1
        if self.progress is not None:
            self.progress(summary.epochs_done, summary.epochs_total, self.eta.estimate(self.left))
            # time spent in the callback (a GUI answering an Explain, a held Pause) is not
            # scoring time
            self.last_done = time.monotonic()


def _put(store: SuggestionStore, epoch: int, answer, key: SuggestionKey) -> bool:
    """Store one runtime answer (``RuntimeAnswer``) under its key (model, renderer, pass)."""
    return store.put(epoch, answer.answer, key, prompt_tokens=answer.prompt_tokens,
                     completion_tokens=answer.completion_tokens, seconds=answer.seconds,
                     stage_probabilities=answer.stage_probabilities)


def _held(pause_event, cancel_event) -> bool:
    """Wait while paused; True when the run is to stop."""
    while pause_event is not None and pause_event.is_set():
        if cancel_event is not None and cancel_event.is_set():
            return True
        if cancel_event is not None:
            cancel_event.wait(_PAUSE_POLL_S)
        else:
            time.sleep(_PAUSE_POLL_S)
    return cancel_event is not None and cancel_event.is_set()


def _log_end_quietly(study: Study, summary: RunSummary, actor: str) -> None:
    """Audit a failed run's end without hiding the failure itself."""
    try:
        record_run_finished(study, summary.key, outcome=summary.outcome,
                            counts=summary.counts(), actor=actor)
    except Exception:
        pass
