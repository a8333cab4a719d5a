"""The window's model features: load a pack, score the night, review the suggestions.

``AIReview`` is a view: the review itself (what is offered, the evidence checks, accept and
override, the queue) is the open session's ``core.review.suggestion_review.SuggestionReview``,
made here when a study opens. This class forwards the panel's buttons and the menu's keys to
it, redraws the panel and the hypnogram's suggestion layer on its events, and drives the model
worker (load a pack, score the night, explain one epoch) through ``ModelController``.

Evidence for the checks comes from the waveform view's evidence cache, measured off the GUI
thread; the panel shows "checking…" until it arrives. Scoring the night with the stage source
set to the stager also runs the second opinion when the study has none yet.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..core.base.rules import load_rules
from ..core.base.stages import Stage
from ..core.model.settings import NOTE, load_settings, save_settings
from ..core.review.session import ReviewSession
from ..core.review.suggestion_review import NoSuggestion, SuggestionReview
from ..core.study.study import Decision
from ..core.study.suggestions import Suggestion
from ..core.trust.report_content import pack_card_summary
from ..errors import InputError
from .ai_panel import LOADING_TEXT, AIPanel
from .model_worker import ModelController, RunTarget
from .run_progress import RunProgress, summary_text
from .settings_dialog import SettingsDialog

MESSAGE_MS = 6000


class AIReview(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.panel = AIPanel()
        self.controller = ModelController(self)
        self.settings = load_settings()
        self.rules = load_rules()
        self.suggestion_review: SuggestionReview | None = None   # the open session's (core)
        self.settings_dialog: SettingsDialog | None = None
        self.accept_box: QMessageBox | None = None     # the question before a contradicted accept
        self._explaining: set[int] = set()
        self.last_summary = None

        self.run_progress = RunProgress()
        self.progress_bar, self.eta_label = self.run_progress.bar, self.run_progress.eta_label

        c = self.controller
        c.model_loaded.connect(self._on_model_loaded)
        c.model_failed.connect(self._on_model_failed)
        c.progress.connect(self._on_progress)
        c.pass_started.connect(self.run_progress.set_pass)
        c.held.connect(self._on_held)
        c.suggestion_ready.connect(self._on_suggestion_ready)
        c.explained.connect(self._on_explained)
        c.finished.connect(self._on_finished)
        c.failed.connect(self._on_failed)
        c.busy_changed.connect(lambda _busy: self.update_actions())
        self.panel.accept_requested.connect(self.accept)
        self.panel.override_requested.connect(self.arm_override)
        self.panel.explain_requested.connect(self.explain)
        window.waveform.evidence.epoch_measured.connect(self._on_evidence_measured)

    def install_status_widgets(self, status_bar) -> None:
        """The run's progress bar, ETA and Pause / Cancel buttons (shown while it runs)."""
        actions = self.window.menu_actions
        self.run_progress.install(status_bar, actions["pause_run"], actions["cancel_run"])

    # -- state ---------------------------------------------------------------------------
    @property
    def session(self) -> ReviewSession | None:
        return self.window.session

    @property
    def override_armed(self) -> bool:
        """Override is armed: the next stage key names the technologist's stage."""
        return self.suggestion_review is not None and self.suggestion_review.override_armed

    def current_suggestion(self) -> Suggestion | None:
        """The suggestion offered for the epoch on screen (None when there is none)."""
        review = self.suggestion_review
        if review is None:
            return None
        try:
            return review.suggestion()
        except InputError as error:
            self._say(str(error))
            return None

    def update_actions(self) -> None:
        actions = self.window.menu_actions
        if "load_model" not in actions:
            return
        c, has_session = self.controller, self.session is not None
        actions["load_model"].setEnabled(not c.busy)
        actions["model_settings"].setEnabled(True)
        actions["score_night"].setEnabled(has_session and c.has_model and not c.busy)
        actions["pause_run"].setEnabled(c.running)
        actions["cancel_run"].setEnabled(c.running)
        actions["explain"].setEnabled(has_session and c.has_model and not c.loading)
        actions["accept_ai"].setEnabled(has_session and c.has_model)
        actions["override_ai"].setEnabled(has_session and c.has_model)
        actions["cancel_override"].setEnabled(self.override_armed)
        if not c.running and actions["pause_run"].isChecked():
            actions["pause_run"].blockSignals(True)
            actions["pause_run"].setChecked(False)
            actions["pause_run"].blockSignals(False)

    def _say(self, text: str) -> None:
        self.window.statusBar().showMessage(text, MESSAGE_MS)

    # -- the model -----------------------------------------------------------------------
    def choose_pack(self) -> None:
        start = self.settings.last_pack or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self.window, "Load model pack", start)
        if folder:
            self.load_model(folder)

    def load_model(self, pack_dir: str | Path) -> bool:
        """Load a pack in the worker thread (verified first); False while the worker is busy."""
        if not self.controller.load_model(pack_dir, self.settings):
            self._say("The model is busy: cancel the scoring run first")
            return False
        self.settings = replace(self.settings, last_pack=str(Path(pack_dir).absolute()))
        save_settings(self.settings)
        self.panel.set_model(None)
        if self.suggestion_review is not None:
            self.suggestion_review.set_model(None)     # redraws: nothing offered
        self.window.hypnogram.clear_suggestions()
        self.panel.set_message(LOADING_TEXT)
        self.update_actions()
        return True

    def _on_model_loaded(self, label: str) -> None:
        self.panel.set_model(label, self.controller.model_id)
        # what the card says the model is and how it scored on real recordings, in plain sight
        provenance, real = pack_card_summary(self.settings.last_pack) if self.settings.last_pack else (None, None)
        if real:
            self.panel.model_label.setText(f"{self.panel.model_label.text()}\nReal EEG: {real}")
        self.panel.model_label.setWordWrap(True)
        self.panel.model_label.setToolTip("\n\n".join(t for t in (provenance, real and f"Real data: {real}") if t))
        self._say(f"Model loaded: {label}")
        if self.suggestion_review is not None:
            self.suggestion_review.set_model(self.controller.key)    # redraws (its event)
        self.update_actions()

    def _on_model_failed(self, message: str) -> None:
        self.panel.set_model(None)
        self.update_actions()
        self.window.show_error("Model pack", message)

    def open_settings(self) -> SettingsDialog:
        """The (window-modal, non-blocking) settings dialog; OK saves the settings."""
        dialog = SettingsDialog(self.settings, self.window)

        def apply() -> None:
            self.settings = dialog.settings()
            save_settings(self.settings)
            if self.suggestion_review is not None:     # redraws and requeues when it changed
                self.suggestion_review.set_source(self.settings.suggested_stage_from)
            if self.controller.has_model:
                self._say("Saved: threads, GPU layers, context size and the lab server "
                          "apply when the model is next loaded; the stage source applies now")

        dialog.accepted.connect(apply)
        self.settings_dialog = dialog
        dialog.open()
        return dialog

    # -- the whole night -----------------------------------------------------------------
    def score_night(self) -> bool:
        session = self.session
        if session is None or not self.controller.has_model:
            self._say("Open a recording and load a model pack first")
            return False
        if not self.controller.score_night(RunTarget.of(session), self.settings):
            self._say("The model is busy")
            return False
        review = self.suggestion_review
        if review is not None and review.wants_second_opinion and not self.window.review.running:
            self.window.review.run_second_opinion(quiet=True)
        self.run_progress.start(session.n_epochs)
        self.update_actions()
        return True

    def set_paused(self, on: bool) -> None:
        if on:
            self.controller.pause()
            self.eta_label.setText("pausing…")
        else:
            self.controller.resume()

    def cancel_run(self) -> None:
        self.controller.cancel()
        self.eta_label.setText("cancelling…")

    def _on_progress(self, done: int, total: int, eta_s) -> None:
        self.run_progress.update(done, total, eta_s, held=self.controller.is_held)

    def _on_held(self, held: bool) -> None:
        self.eta_label.setText("paused" if held else "resuming…")

    def _end_run(self) -> None:
        self.run_progress.end()
        self.update_actions()

    def _on_finished(self, summary) -> None:
        self.last_summary = summary
        self._end_run()
        self._say(summary_text(summary))

    def _on_failed(self, message: str) -> None:
        self._end_run()
        self.window.show_error("AI scoring", message)

    # -- suggestions on screen -----------------------------------------------------------
    def refresh(self) -> None:
        """Redraw the hypnogram's suggestion layer and the panel from the study."""
        review = self.suggestion_review
        found = {}
        if review is not None:
            try:
                found = review.suggestions()
            except InputError as error:
                self._say(str(error))
        if found:
            self.window.hypnogram.set_suggestions({e: s.stage for e, s in found.items()})
        else:
            self.window.hypnogram.clear_suggestions()
        try:
            opinions = {} if review is None else review.opinions()
        except InputError:
            opinions = {}
        self.window.hypnogram.set_second_opinion({e: o.stage for e, o in opinions.items()})
        if self.session is not None:
            self.show_epoch(self.session.epoch)

    def stage_changed(self, epoch: int) -> None:
        """An epoch was scored or undone: the decision line follows when it is on screen."""
        if self.session is not None and epoch == self.session.epoch:
            self.show_epoch(epoch)

    def epoch_changed(self, epoch: int) -> None:
        """The technologist moved: an armed override is dropped, the panel follows."""
        if self.suggestion_review is not None:
            self.suggestion_review.epoch_moved()
        self.show_epoch(epoch)

    def show_epoch(self, epoch: int) -> None:
        suggestion = self.current_suggestion()
        try:
            flags = self.suggestion_review.rationale_flags(suggestion) if suggestion else ()
        except InputError:
            flags = ()
        self.panel.show_suggestion(suggestion, self.rules, flags)
        review, decision, opinion = self.suggestion_review, None, None
        if review is not None:
            try:
                decision, opinion = review.decision(epoch), review.opinion(epoch)
            except InputError:
                pass
        self.panel.show_decision(decision)
        self.panel.show_opinion(opinion, led=suggestion is not None and suggestion.led)
        self._show_checks(suggestion, epoch)
        if epoch in self._explaining:
            self.panel.set_explaining(True)

    # -- evidence checks -----------------------------------------------------------------
    def _show_checks(self, suggestion: Suggestion | None, epoch: int) -> None:
        review = self.suggestion_review
        if suggestion is None or review is None:
            return
        service = self.window.waveform.evidence
        found = service.findings(epoch)
        if found is None:
            service.request([epoch])
            self.panel.set_checking()
            return
        try:
            rule_checks, claim_checks = review.checks(suggestion, found.evidence)
        except InputError as error:
            self._say(str(error))
            return
        self.panel.set_evidence_checks(rule_checks, claim_checks)

    def _on_evidence_measured(self, epoch: int) -> None:
        if self.session is not None and epoch == self.session.epoch and self.panel.suggestion is not None:
            self._show_checks(self.panel.suggestion, epoch)

    def _on_suggestion_ready(self, epoch: int) -> None:
        if self.suggestion_review is not None:
            self.suggestion_review.answer_stored(epoch)     # -> _on_suggestion_stored

    def _on_suggestion_stored(self, epoch: int) -> None:
        try:
            suggestion = self.suggestion_review.suggestion(epoch)
        except InputError:
            return
        self.window.hypnogram.set_suggestion(epoch, None if suggestion is None
                                             else suggestion.stage)
        if self.session is not None and epoch == self.session.epoch:
            self.show_epoch(epoch)

    def explain(self) -> bool:
        """Ask the model now for the rationale of the epoch on screen (in the worker)."""
        session = self.session
        if session is None or not self.controller.has_model:
            self._say("Load a model pack to ask it why")
            return False
        suggestion = self.current_suggestion()
        if suggestion is not None and suggestion.rationale is not None:
            return False
        epoch = session.epoch
        if not self.controller.explain(RunTarget.of(session), epoch,
                                       self.settings.rationale_tokens):
            self._say("The model is still loading")
            return False
        self._explaining.add(epoch)
        self.panel.set_explaining(True)
        return True

    def _on_explained(self, epoch: int, problem: str) -> None:
        self._explaining.discard(epoch)
        if problem:
            self._say(f"Explain: {problem}")
        if self.session is not None and epoch == self.session.epoch:
            self.panel.set_explaining(False)
            self.show_epoch(epoch)

    # -- the technologist's answer -------------------------------------------------------
    def accept(self) -> Decision | None:
        """Take the offered stage for this epoch (ai_accepted), then go to the next epoch.

        When the signal contradicts a rule the suggestion cites (the panel's ✗ badge), the
        technologist is asked first, as the setting ``contradicted_accept`` says: a question
        naming the contradiction (Yes accepts, the decision's note records it) or a note saying
        why. None is returned while that question is open."""
        review = self.suggestion_review
        if review is None:
            return None
        try:
            suggestion = review.required()
            found = self.window.waveform.evidence.findings(suggestion.epoch)
            contradicted = review.contradicted(suggestion, found.evidence) if found else []
            if not contradicted:
                return review.accept()
        except (InputError, ValueError) as error:     # NoSuggestion says "not scored yet"
            self._say(str(error))
            return None
        return self._accept_contradicted(suggestion, contradicted)

    def _accept_contradicted(self, suggestion: Suggestion, contradicted: list) -> Decision | None:
        what = "; ".join(f"{c.rule_id}: {c.reason}" for c in contradicted)
        note = f"accepted although the signal contradicts {what}"

        asked = self.suggestion_review

        def take(extra: str | None = None) -> Decision | None:
            review = self.suggestion_review
            if review is None or review is not asked:
                return None                    # the study closed while the question was open
            try:
                return review.accept(
                    suggestion.epoch, note=note if not extra else f"{note}. Why: {extra.strip()}")
            except (InputError, ValueError) as error:
                self._say(str(error))
                return None

        if self.settings.contradicted_accept == NOTE:
            why = self.panel.ask_accept_note(suggestion, what)
            if why is None or not why.strip():
                self._say("Not accepted: a note is required when the signal contradicts a cited rule")
                return None
            return take(why)
        box = QMessageBox(QMessageBox.Icon.Warning, "Accept a contradicted suggestion",
                          f"The signal contradicts what the suggestion cites ({what}).\n\n"
                          f"Accept {suggestion.stage.label if suggestion.stage else 'it'} anyway? "
                          f"The decision's note will say so.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                          self.window)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(
            lambda button: box.standardButton(button) == QMessageBox.StandardButton.Yes and take())
        self.accept_box = box
        box.open()
        return None

    def arm_override(self) -> bool:
        """Override: the next stage key names the technologist's stage."""
        review = self.suggestion_review
        if review is None:
            return False
        try:
            review.arm_override()                      # -> _on_override_armed
        except (InputError, ValueError) as error:
            self._say(str(error))
            return False
        self._say("Override: press W, 1, 2, 3 or R for your stage (Esc cancels)")
        return True

    def cancel_override(self) -> None:
        if self.suggestion_review is not None:
            self.suggestion_review.cancel_override()   # -> _on_override_armed

    def _on_override_armed(self, armed: bool) -> None:
        self.panel.set_override_armed(armed)
        self.update_actions()

    def override_with(self, stage: Stage) -> Decision | None:
        """Score ``stage`` against the offered suggestion (ai_overridden) with a required note."""
        review = self.suggestion_review
        if review is None:
            return None
        try:
            suggestion = review.override_target(stage)
        except NoSuggestion:
            return None
        except (InputError, ValueError) as error:
            self._say(str(error))
            return None
        note = self.panel.ask_note(stage, suggestion)
        if note is None:
            self._say("Override cancelled: nothing was recorded")
            return None
        try:
            return review.override(stage, note, suggestion=suggestion)
        except (InputError, ValueError) as error:     # NOTE_REQUIRED for an empty note
            self._say(str(error))
            return None

    # -- the session ---------------------------------------------------------------------
    def session_opened(self, session: ReviewSession) -> None:
        self.controller.set_study(session.study.path)
        self._explaining.clear()
        review = SuggestionReview(session, key=self.controller.key,
                                  source=self.settings.suggested_stage_from)
        review.suggestions_changed.connect(self.refresh)
        review.suggestion_stored.connect(self._on_suggestion_stored)
        review.override_armed_changed.connect(self._on_override_armed)
        self.suggestion_review = review
        self.panel.set_study_open(True)
        self.refresh()
        self.update_actions()

    def session_closing(self) -> None:
        """The study is about to close: stop a run on it and forget its suggestions."""
        if self.controller.running:
            self.controller.cancel()
        self.controller.set_study(None)
        self._explaining.clear()
        self.cancel_override()
        self.suggestion_review = None
        self.panel.set_study_open(False)
        self.window.hypnogram.clear_suggestions()
        self.panel.show_suggestion(None, self.rules)
        self.panel.show_decision(None)
        self.panel.show_opinion(None)
        self.update_actions()

    def shutdown(self) -> None:
        self.controller.shutdown()
