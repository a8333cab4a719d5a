"""The window's review features: the second opinion, the review queue, bulk acceptance.

``ReviewActions`` is a view of the open session's review queue, which the session's
``core.review.suggestion_review.SuggestionReview`` builds (from the model's stored suggestions,
the stored second opinion and, once measured in this session, the signal evidence). It asks
for a rebuild when the suggestions change (throttled while a run stores answers), marks flagged
epochs on the hypnogram, moves to the next / previous
flagged epoch in time (F / ], Shift+F / [) or to the least confident one not yet reviewed (L:
worst first) and says "reviewed X of Y flagged". "Run second opinion" runs YASA and measures
the evidence in a QThread; the GUI thread stores the result (the study is used by one thread).
"Accept all unflagged…" asks first, naming the count, then writes one audited transaction.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot
from PySide6.QtWidgets import QMessageBox

from ..core.base.probabilities import format_percent
from ..core.base.thread_priority import lower_this_thread
from ..core.review.review_queue import ReviewQueue, status_text
from ..core.trust import second_opinion
from ..core.trust.evidence import measure_recording
from ..errors import InputError
from .loader import describe_failure

MESSAGE_MS = 6000
REBUILD_DELAY_MS = 300


class _SecondOpinionWorker(QObject):
    """Runs in its own thread: YASA on the recording, then the evidence measurements."""

    done = Signal(object, object)      # SecondOpinionResult, evidence list (or None)
    unavailable = Signal(str)          # the reason, one line

    def __init__(self, recording, montage):
        super().__init__()
        self.recording, self.montage = recording, montage

    @Slot()
    def run(self) -> None:
        lower_this_thread()         # minutes of CPU: the model answering Explain goes first
        try:
            result = second_opinion.compute(self.recording, self.montage)
            evidence = measure_recording(self.recording, self.montage)
        except Exception as error:  # noqa: BLE001 - every failure becomes one line for the user
            self.unavailable.emit(describe_failure(self.recording.path, error))
        else:
            self.done.emit(result, evidence)


class ReviewActions(QObject):
    """Owned by the main window; the window's menu actions call its methods."""

    finished = Signal()     # a second-opinion run ended (stored, unavailable or dropped)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.bulk_box: QMessageBox | None = None
        self.last_message = ""
        self._thread: QThread | None = None
        self._worker: _SecondOpinionWorker | None = None
        self._run_session = None
        self._bulk = False
        self._quiet = False          # this run was started by Score night, not the menu
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REBUILD_DELAY_MS)
        self._timer.timeout.connect(self.rebuild)
        window.ai.controller.finished.connect(lambda _summary: self.rebuild())

    @property
    def session(self):
        return self.window.session

    @property
    def suggestion_review(self):
        """The open session's ``SuggestionReview`` (None without a session)."""
        return self.window.ai.suggestion_review

    @property
    def queue(self) -> ReviewQueue | None:
        review = self.suggestion_review
        return None if review is None else review.queue

    @property
    def evidence(self):
        review = self.suggestion_review
        return None if review is None else review.evidence

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _say(self, text: str) -> None:
        self.last_message = text
        self.window.statusBar().showMessage(text, MESSAGE_MS)

    def update_actions(self) -> None:
        actions, has = self.window.menu_actions, self.session is not None
        for name in ("next_flagged", "previous_flagged", "least_confident", "accept_unflagged"):
            if name in actions:
                actions[name].setEnabled(has)
        if "second_opinion" in actions:
            actions["second_opinion"].setEnabled(has and not self.running)

    # -- the queue -----------------------------------------------------------------------
    def _answer_stored(self, _epoch: int) -> None:
        # a throttle, not a debounce: restarting the timer on every answer would starve the
        # rebuild while answers come faster than REBUILD_DELAY_MS (a lab server's run)
        if not self._timer.isActive():
            self._timer.start()

    def rebuild(self) -> None:
        """Rebuild the queue from the study (and this session's evidence); redraw the flags."""
        self._timer.stop()
        review = self.suggestion_review
        if review is None:
            self.refresh_flags()
            return
        try:
            review.rebuild_queue()          # -> queue_changed -> refresh_flags
        except InputError as error:
            self._say(str(error))

    def refresh_flags(self, _queue=None) -> None:
        """Hypnogram marks and the status bar, after a stage changed or the queue was rebuilt."""
        review = self.suggestion_review
        if review is None or review.queue is None:
            self.window.hypnogram.set_flags([])
        else:
            flagged, reviewed = review.reviewed_flags()
            self.window.hypnogram.set_flags(flagged, reviewed=reviewed)
        self.window._update_status()

    def stage_changed(self, epoch: int) -> None:
        """One epoch was scored or undone: its flag may now show as reviewed."""
        if not self._bulk and self.queue is not None and self.queue.is_flagged(epoch):
            self.refresh_flags()

    def status_text(self) -> str:
        session = self.session
        return "" if session is None else status_text(self.queue, session.stages())

    def _has_flags(self) -> bool:
        """The queue is current and flags something; else the status bar says why not."""
        if self.queue is None or self._timer.isActive():
            self.rebuild()
        if self.queue is None or not self.queue.flagged:
            self._say("No flagged epochs: run the model (and the second opinion) first"
                      if self.queue is None or not self.queue.suggestions
                      else "No flagged epochs")
            return False
        return True

    def go_flagged(self, direction: int) -> int | None:
        """Move to the next (+1) or previous (-1) flagged epoch; None when there is none."""
        session = self.session
        if session is None:
            return None
        if not self._has_flags():
            return None
        find = self.queue.next_after if direction > 0 else self.queue.previous_before
        target = find(session.epoch)
        if target is None:
            self._say("No more flagged epochs " + ("after" if direction > 0 else "before")
                      + " this one")
            return None
        self._show_flagged(target)
        return target

    def go_highest_priority(self) -> int | None:
        """Move to the unreviewed flagged epoch with the most weight of reasons (ties in
        time order); None when every flagged epoch is reviewed."""
        return self._go_first_unreviewed(lambda queue, stages: queue.next_by_priority(stages))

    def go_least_confident(self) -> int | None:
        """Move to the flagged epoch the model is least sure of among those not yet reviewed
        (worst first, whatever the time); None when every flagged epoch is reviewed."""
        return self._go_first_unreviewed(lambda queue, stages: queue.next_least_confident(stages))

    def _go_first_unreviewed(self, find) -> int | None:
        session = self.session
        if session is None:
            return None
        if not self._has_flags():
            return None
        target = find(self.queue, session.stages())
        if target is None:
            self._say("Every flagged epoch is reviewed")
            return None
        self._show_flagged(target)
        return target

    def _show_flagged(self, target: int) -> None:
        self.window.go_to(target)
        item = self.queue.item(target)
        if item is not None:
            p = self.queue.confidence(target)
            model = f", model {format_percent(p)}" if p is not None else ""
            self._say(f"Epoch {target + 1}: flagged (priority {item.priority}{model}): {item.describe()}")

    # -- the second opinion --------------------------------------------------------------
    def run_second_opinion(self, quiet: bool = False) -> bool:
        """Start YASA (and the evidence measurements) in a thread; False if one is running.
        ``quiet``: started by Score night for the suggested stage, so a recording YASA cannot
        stage says so in the status bar, not in an error dialog."""
        session = self.session
        if session is None or self.running:
            return False
        self._quiet = quiet
        thread = QThread()
        worker = _SecondOpinionWorker(session.recording, session.montage)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.done.connect(self._on_done)
        worker.unavailable.connect(self._on_unavailable)
        self._thread, self._worker, self._run_session = thread, worker, session
        thread.start()
        self._say("Second opinion: staging the night with YASA and measuring the evidence…")
        self.update_actions()
        return True

    def _end_run(self) -> bool:
        """Stop the thread; True when its session is still the open one."""
        thread, self._thread, self._worker = self._thread, None, None
        if thread is not None:
            thread.quit()
            thread.wait()
        same = self._run_session is not None and self._run_session is self.session
        self._run_session = None
        self.update_actions()
        return same

    @Slot(object, object)
    def _on_done(self, result, evidence) -> None:
        if not self._end_run():
            self.finished.emit()
            return
        try:    # offers the stages anew and rebuilds the queue (its events)
            added = self.suggestion_review.store_second_opinion(result, evidence)
        except (InputError, ValueError) as error:
            self.window.show_error("Second opinion", str(error))
            self.finished.emit()
            return
        flagged = len(self.queue.flagged) if self.queue is not None else 0
        self._say(f"Second opinion ({result.method}): {len(result.opinions)} epochs, "
                  f"{added} newly stored; {flagged} epochs flagged for review")
        self.finished.emit()

    @Slot(str)
    def _on_unavailable(self, message: str) -> None:
        same = self._end_run()
        if same:
            if self._quiet:
                self.suggestion_review.stager_failed()     # not asked again for this study
                self._say(f"Suggested stages come from the model: {message}")
            else:
                self._say(message)
                self.window.show_error("Second opinion", message)
        self.finished.emit()

    # -- bulk acceptance -----------------------------------------------------------------
    def ask_accept_unflagged(self) -> QMessageBox | None:
        """A window-modal confirmation naming the count; Yes accepts them all. None (and a
        status message) when nothing qualifies."""
        session = self.session
        if session is None:
            return None
        self.rebuild()
        count = len(self.queue.acceptable(session.stages())) if self.queue else 0
        if not count:
            self._say("Nothing to accept: every suggestion is flagged or already scored")
            return None
        checks = ["model answer flags", "N1", "stage changes"]
        if any(getattr(s, "model_probability", None) is not None
               for s in self.queue.suggestions.values()):
            checks.insert(0, "model confidence")
        criteria = self.queue.criteria
        if criteria.get("second_opinion"):
            checks.insert(0, "second opinion")
        if criteria.get("evidence_checked"):
            checks.insert(0, "signal evidence")
        unfinished = ""
        if self.window.ai.controller.running:     # the model has not answered every epoch yet
            unfinished = (f"\n\nThe model is still scoring the night: it has answered "
                          f"{len(self.queue.suggestions)} of {session.n_epochs} epochs so far. "
                          f"Epochs it has not answered are left unscored; wait for the run to "
                          f"finish to include them.")
        box = QMessageBox(QMessageBox.Icon.Question, "Accept all unflagged",
                          f"Accept the suggested stage (YASA's where it led, else the model's) "
                          f"for {count} unflagged, unscored epochs?\n\n"
                          f"Checked: {', '.join(checks)}. Each epoch is recorded as accepted by "
                          f"{session.scorer} (audited, undoable one by one).{unfinished}",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                          self.window)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        yes = QMessageBox.StandardButton.Yes
        box.buttonClicked.connect(
            lambda button: box.standardButton(button) == yes and self.accept_unflagged())
        self.bulk_box = box
        box.open()
        return box

    def accept_unflagged(self) -> int:
        """Accept every unflagged, unscored suggestion now (no question); returns the count."""
        review = self.suggestion_review
        if review is None or review.queue is None:
            return 0
        self._bulk = True
        try:
            decisions = review.accept_unflagged()
        except (InputError, ValueError) as error:
            self.window.show_error("Accept all unflagged", str(error))
            return 0
        finally:
            self._bulk = False
        self._quiet = False          # this run was started by Score night, not the menu
        self.refresh_flags()
        self._say(f"Accepted {len(decisions)} unflagged epochs")
        return len(decisions)

    # -- the session ---------------------------------------------------------------------
    def session_opened(self) -> None:
        review = self.suggestion_review
        review.suggestions_changed.connect(self.rebuild)
        review.suggestion_stored.connect(self._answer_stored)
        review.queue_changed.connect(self.refresh_flags)
        self.rebuild()
        self.update_actions()

    def session_closing(self) -> None:
        self._timer.stop()
        self.window.hypnogram.set_flags([])

    def shutdown(self) -> None:
        """The window closes: a run under way finishes first (its result is dropped)."""
        self._run_session = None
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
