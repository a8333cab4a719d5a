"""ReviewSession: an open recording + its study + where the technologist is.

This is the Qt-free model the window presents (napari style): navigation, score-and-advance,
undo. The UI connects to the emitters and forwards key presses here; nothing in this module
knows about widgets.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from ..base.events import EventEmitter
from ..base.stages import EPOCH_SECONDS, Stage
from ..signals.montage import Montage, auto_montage
from ..signals.recording import Recording
from ..study.study import MANUAL, Decision, Study, default_study_path
from ..study.suggestions import accept, override
from .review_queue import accept_unflagged

CURRENT_EPOCH_KEY = "current_epoch"


def open_study(recording: Recording, study_path: str | Path | None = None, *,
               scorer: str = "technologist", check_fingerprint: bool = True) -> Study:
    """The study of an open recording: opened, or created with the auto montage when absent.

    Parameters
    ----------
    recording : Recording
        The open recording (not opened again here).
    study_path : path, optional
        The study file; default: beside the recording (``default_study_path``).
    scorer : str
        Who a new study names as its scorer.
    check_fingerprint : bool
        Refuse (InputError, one line) a study that belongs to another recording.

    Returns
    -------
    Study
        Open; the caller closes it.
    """
    path = Path(study_path) if study_path else default_study_path(recording.path)
    if not path.exists():
        return Study.create(
            path,
            recording_path=recording.path,
            n_epochs=recording.n_epochs,
            montage=auto_montage([c.label for c in recording.channels]),
            scorer=scorer,
            recording_fingerprint=recording.fingerprint(),
            start_iso=recording.start.isoformat() if recording.start else None,
        )
    study = Study.open(path)
    fingerprint = study.meta["recording_fingerprint"]
    if check_fingerprint and fingerprint and fingerprint != recording.fingerprint():
        study.close()
        raise InputError(path, f"this study belongs to another recording, not {recording.path.name}")
    return study


class ReviewSession:
    def __init__(self, recording: Recording, study: Study, scorer: str):
        self.recording = recording
        self.study = study
        self.scorer = scorer
        self._stages = study.stages()
        saved = study.get_state(CURRENT_EPOCH_KEY)
        self._epoch = self._clamp(int(saved)) if saved and saved.isdigit() else 0
        # Emitters (the UI connects to these)
        self.epoch_changed = EventEmitter()      # (epoch: int)
        self.stage_changed = EventEmitter()      # (epoch: int, stage: Stage)
        self.montage_changed = EventEmitter()    # (montage: Montage)

    # -- opening -----------------------------------------------------------------------
    @classmethod
    def open(cls, recording_path: str | Path, *, study_path: str | Path | None = None,
             scorer: str = "technologist") -> "ReviewSession":
        """Open a recording and its study (created with the auto montage on first open).

        Never writes to the recording. The study's recording fingerprint is not checked here.

        Parameters
        ----------
        recording_path : str or Path
            The EDF/BDF recording.
        study_path : str or Path, optional
            The study file; default: beside the recording (``night.edf.sleepvlm``).
        scorer : str
            Who the session's decisions name; also the scorer of a newly created study.

        Returns
        -------
        ReviewSession
            At the epoch saved in the study (else epoch 0); the caller closes it.

        Raises
        ------
        RecordingError, StudyError
            One line naming the file; the recording is closed again when the study fails.
        """
        recording = Recording.open(recording_path)
        try:
            study = open_study(recording, study_path, scorer=scorer, check_fingerprint=False)
        except Exception:
            recording.close()
            raise
        return cls(recording, study, scorer)

    def close(self) -> None:
        self.study.close()
        self.recording.close()

    # -- state -------------------------------------------------------------------------
    @property
    def n_epochs(self) -> int:
        return self.study.n_epochs

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def montage(self) -> Montage:
        return self.study.montage

    def stages(self) -> list[Stage]:
        return list(self._stages)

    def stage(self, epoch: int | None = None) -> Stage:
        """The stage of an epoch as the study holds it now.

        Parameters
        ----------
        epoch : int, optional
            Epoch index; default: the current epoch.

        Returns
        -------
        Stage
            ``Stage.UNSCORED`` until the technologist scores it.
        """
        return self._stages[self._epoch if epoch is None else epoch]

    def progress(self) -> tuple[int, int]:
        scored = sum(1 for s in self._stages if s is not Stage.UNSCORED)
        return scored, self.n_epochs

    def epoch_onset_s(self, epoch: int | None = None) -> float:
        """Seconds from the recording start to the start of an epoch.

        Parameters
        ----------
        epoch : int, optional
            Epoch index (not checked against ``n_epochs``); default: the current epoch.

        Returns
        -------
        float
            ``epoch * 30``.
        """
        return (self._epoch if epoch is None else epoch) * EPOCH_SECONDS

    # -- navigation --------------------------------------------------------------------
    def _clamp(self, epoch: int) -> int:
        return max(0, min(self.study.n_epochs - 1, epoch))

    def go_to(self, epoch: int) -> None:
        """Make ``epoch`` current, save it in the study and emit ``epoch_changed``.

        Nothing is saved or emitted when the epoch is already current.

        Parameters
        ----------
        epoch : int
            Epoch index; clamped to ``0 .. n_epochs - 1``.
        """
        epoch = self._clamp(epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self.study.set_state(CURRENT_EPOCH_KEY, str(epoch))
            self.epoch_changed.emit(epoch)

    def step(self, delta: int) -> None:
        """Move ``delta`` epochs from the current one (see :meth:`go_to`).

        Parameters
        ----------
        delta : int
            Epochs to move: positive forward, negative back; clamped at either end.
        """
        self.go_to(self._epoch + delta)

    # -- scoring -----------------------------------------------------------------------
    def score(self, stage: Stage, *, advance: bool = True, source: str = MANUAL,
              note: str | None = None, epoch: int | None = None) -> Decision:
        """Record a decision for the current (or given) epoch, then move to the next epoch.

        The decision is committed before this returns; ``stage_changed`` is emitted.

        Parameters
        ----------
        stage : Stage
            The technologist's stage (or any spelling ``parse_stage`` reads).
        advance : bool
            Move to the next epoch afterwards; only when ``epoch`` is not given.
        source : str
            The decision's source (``manual`` by default; ``Study.score`` lists the others).
        note : str, optional
            A note kept with the decision.
        epoch : int, optional
            Score this epoch instead of the current one (the current epoch stays).

        Returns
        -------
        Decision
            As recorded in the study.
        """
        target = self._epoch if epoch is None else epoch
        decision = self.study.score(target, stage, scorer=self.scorer, source=source, note=note)
        self._stages[target] = decision.stage
        self.stage_changed.emit(target, decision.stage)
        if advance and epoch is None:
            self.step(1)
        return decision

    def accept_suggestion(self, suggestion, *, advance: bool = True,
                          note: str | None = None) -> Decision:
        """Take the suggested stage for the suggestion's epoch, then move on like a stage key does.

        The stage taken is the one offered (the stager's where it led); the decision's source is
        ``ai_accepted`` and its audit event refers to the suggestion.

        Parameters
        ----------
        suggestion : Suggestion
            The suggestion as offered (``core.study.suggestions``).
        advance : bool
            Move to the next epoch afterwards when the suggestion is for the current epoch.
        note : str, optional
            Kept with the decision and its audit event.

        Returns
        -------
        Decision
            As recorded in the study.

        Raises
        ------
        ValueError
            When the suggestion named no stage.
        """
        return self._record(accept(self.study, suggestion.epoch, suggestion, self.scorer, note=note),
                            advance)

    def override_suggestion(self, suggestion, stage: Stage, note: str, *,
                            advance: bool = True) -> Decision:
        """Score the suggestion's epoch differently from the suggestion (source ai_overridden).

        Parameters
        ----------
        suggestion : Suggestion
            The suggestion overridden, as offered.
        stage : Stage
            The technologist's stage (or any spelling ``parse_stage`` reads).
        note : str
            Why; required.
        advance : bool
            Move to the next epoch afterwards when the suggestion is for the current epoch.

        Returns
        -------
        Decision
            As recorded in the study.

        Raises
        ------
        ValueError
            Without a note, or when ``stage`` is the suggested stage itself (accept it instead).
        """
        decision = override(self.study, suggestion.epoch, stage, suggestion, self.scorer, note)
        return self._record(decision, advance)

    def accept_unflagged(self, queue) -> list[Decision]:
        """Accept every unflagged, unscored suggestion of a review queue in one transaction.

        See ``review_queue.accept_unflagged`` (one ``bulk_accept`` audit event besides the
        decisions). ``stage_changed`` is emitted for each; the current epoch stays.

        Parameters
        ----------
        queue : ReviewQueue
            The queue built from this study's suggestions.

        Returns
        -------
        list of Decision
            In epoch order; empty (nothing written) when no epoch qualifies.

        Raises
        ------
        ValueError
            When the queue covers another number of epochs than the study.
        """
        decisions = accept_unflagged(self.study, queue, self.scorer)
        for decision in decisions:
            self._record(decision, advance=False)
        return decisions

    def _record(self, decision: Decision, advance: bool) -> Decision:
        self._stages[decision.epoch] = decision.stage
        self.stage_changed.emit(decision.epoch, decision.stage)
        if advance and decision.epoch == self._epoch:
            self.step(1)
        return decision

    def undo(self) -> Decision | None:
        """Revert the last decision (the undo itself is audited) and show its epoch."""
        decision = self.study.undo(scorer=self.scorer)
        if decision is not None:
            self._stages[decision.epoch] = decision.stage
            self.stage_changed.emit(decision.epoch, decision.stage)
            self.go_to(decision.epoch)
        return decision

    def set_montage(self, montage: Montage) -> None:
        """Save ``montage`` in the study (audited when it changed) and emit ``montage_changed``.

        Parameters
        ----------
        montage : Montage
            The new montage; ``montage_changed`` is emitted even when it equals the old one.
        """
        self.study.set_montage(montage, scorer=self.scorer)
        self.montage_changed.emit(montage)
