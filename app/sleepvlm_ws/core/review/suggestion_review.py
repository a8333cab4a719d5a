"""SuggestionReview: the model's side of an open study's review, as one Qt-free evented object.

A technologist reviewing a night with the model sees, for each epoch, the stage offered (the
model's, or the real-trained stager's where it led: ``suggested_stage``), the model's rules and
rationale checked against the signal, a queue of epochs flagged for a human look, and Accept /
Override. All of that is decided here, from the study and the session, and nothing here knows
about widgets: the AI panel, its controller and the review actions in ``ui`` are views that
call these methods and redraw on the events (napari's evented models, as ``ReviewSession``
already is for stages and navigation). So the whole review runs headless in tests.

Events (``core.base.events.EventEmitter``; callbacks run in the thread that caused them, the
GUI thread in the workstation):

``suggestions_changed()``
    Every offered suggestion may have changed: a model was loaded or forgotten, the stage
    source setting changed, or a second opinion was stored.
``suggestion_stored(epoch)``
    A scoring run stored an answer for ``epoch`` (``answer_stored``).
``queue_changed(queue)``
    The review queue was rebuilt (``ReviewQueue``, or None when there is nothing to queue).
``override_armed_changed(armed)``
    Override was armed (the next stage key names the technologist's stage) or disarmed.

What the model said is read from the study each time it is asked (the study is the one source
of truth; a run in another thread writes into it); only the stager's answers are cached, read
once and again after ``store_second_opinion``.
"""

from __future__ import annotations

from ...errors import InputError
from ..base.events import EventEmitter
from ..base.stage_source import DEFAULT_SOURCE, STAGER, check_source
from ..base.stages import Stage
from ..study.decision import DECISION_COLUMNS, UNDO, decision_from_row
from ..study.study import Decision
from ..study.suggestions import FAST, Suggestion, SuggestionKey, SuggestionStore, rationale_only_flags
from ..trust import second_opinion
from ..trust.evidence.claims import check_claims
from ..trust.evidence.rules_check import CONTRADICTED, check_suggestion, hypnogram_neighbours
from .review_queue import ReviewQueue, build_queue
from .session import ReviewSession
from .suggested_stage import lead, lead_all

__all__ = ["SuggestionReview", "NoSuggestion", "NOT_SCORED_TEXT", "NOTE_REQUIRED"]

NOT_SCORED_TEXT = "Not scored by the model yet"
NOTE_REQUIRED = "An override needs a note saying why: nothing was recorded"


class NoSuggestion(ValueError):
    """The epoch has no suggestion to accept or override (the message says so, one line)."""


class SuggestionReview:
    """The suggestions, evidence checks, review queue and accept / override of one session.

    Parameters
    ----------
    session : ReviewSession
        The open recording and study (decisions go through it, so its stage and epoch events
        fire as for a stage key).
    key : SuggestionKey, optional
        The loaded model's answers; None: no model loaded (nothing offered, though the queue
        still reviews the study's latest model's suggestions).
    source : str
        Where the offered stage comes from: ``STAGER`` (the default) or ``MODEL``
        (``core.base.stage_source``).
    """

    def __init__(self, session: ReviewSession, *, key: SuggestionKey | None = None,
                 source: str = DEFAULT_SOURCE):
        self.session = session
        self.store = SuggestionStore(session.study)
        self.key = None if key is None else key.for_pass(None)
        self.source = check_source(source)
        self.evidence = None               # this session's measured evidence (the queue's)
        self.queue: ReviewQueue | None = None
        self.stager_unavailable = False    # the stager could not run on this study
        self.override_armed = False
        self._opinions: dict | None = None
        self.suggestions_changed = EventEmitter()       # ()
        self.suggestion_stored = EventEmitter()         # (epoch: int)
        self.queue_changed = EventEmitter()             # (queue: ReviewQueue | None)
        self.override_armed_changed = EventEmitter()    # (armed: bool)

    # -- what is offered -----------------------------------------------------------------
    def opinions(self) -> dict:
        """The study's stored second opinion: epoch -> ``SecondOpinion`` ({} when none)."""
        if self._opinions is None:
            self._opinions = second_opinion.load(self.session.study)
        return self._opinions

    def offered(self, suggestion: Suggestion | None) -> Suggestion | None:
        """A stored suggestion as offered.

        Parameters
        ----------
        suggestion : Suggestion or None
            The model's, as stored.

        Returns
        -------
        Suggestion or None
            Led by the stager where the source says so and it has an answer; else as given.
        """
        if suggestion is None:
            return None
        return lead(suggestion, self.opinions().get(suggestion.epoch), self.source)

    def opinion(self, epoch: int | None = None):
        """The second opinion's answer for an epoch.

        Parameters
        ----------
        epoch : int, optional
            Default: the epoch on screen.

        Returns
        -------
        SecondOpinion or None
            ``method``, ``stage``, ``probabilities``; None where the stager has none.
        """
        return self.opinions().get(self.session.epoch if epoch is None else int(epoch))

    def suggestion(self, epoch: int | None = None) -> Suggestion | None:
        """The suggestion offered for ``epoch``.

        Parameters
        ----------
        epoch : int, optional
            Default: the epoch on screen.

        Returns
        -------
        Suggestion or None
            None without a loaded model or an answer for the epoch.

        Raises
        ------
        InputError
            The study's suggestions cannot be read (one line).
        """
        if self.key is None:
            return None
        epoch = self.session.epoch if epoch is None else int(epoch)
        return self.offered(self.store.get(epoch, self.key))

    def suggestions(self) -> dict[int, Suggestion]:
        """Epoch -> the suggestion offered, for every epoch the loaded model answered ({}
        without one): the hypnogram's suggestion layer."""
        if self.key is None:
            return {}
        return lead_all(self.store.all_for(self.key), self.opinions(), self.source)

    def under_review(self) -> dict[int, Suggestion]:
        """The suggestions the queue reviews, as offered: the loaded model's, else those of
        the model that made suggestions here most recently."""
        key = self.key
        if key is None:
            models = self.store.models()
            if not models:
                return {}
            key = models[0][0]
        return lead_all(self.store.all_for(key), self.opinions(), self.source)

    def rationale_flags(self, suggestion: Suggestion | None) -> tuple[str, ...]:
        """Flags of a merged suggestion that only its rationale answer carries.

        Parameters
        ----------
        suggestion : Suggestion or None
            As offered for an epoch.

        Returns
        -------
        tuple of str
            Shown apart, as the rationale's own; () without a rationale.
        """
        if suggestion is None or suggestion.pass_name != FAST or suggestion.rationale is None:
            return ()
        fast = self.store.get_pass(suggestion.epoch, suggestion.key.for_pass(FAST))
        return rationale_only_flags(suggestion, fast)

    def decision(self, epoch: int | None = None) -> Decision | None:
        """The technologist's decision behind an epoch's stage (shown beside the suggestion).

        Parameters
        ----------
        epoch : int, optional
            Default: the epoch on screen.

        Returns
        -------
        Decision or None
            The standing decision (undone ones skipped: the one an undo went back to stands
            again); None while the epoch is unscored.
        """
        epoch = self.session.epoch if epoch is None else int(epoch)
        rows = self.session.study.query(f"SELECT {DECISION_COLUMNS} FROM decisions WHERE epoch = ? "
                                        f"ORDER BY id", (epoch,))
        standing: list[Decision] = []
        for decision in map(decision_from_row, rows):
            if decision.source == UNDO:
                standing = [d for d in standing if d.id != decision.undoes]
            else:
                standing.append(decision)
        if standing and standing[-1].stage is self.session.stage(epoch) and standing[-1].stage.is_scored:
            return standing[-1]
        return None

    # -- evidence checks -----------------------------------------------------------------
    def neighbours(self, epoch: int) -> tuple:
        """The stages either side of an epoch as the hypnogram has them.

        Parameters
        ----------
        epoch : int
            The epoch (0-based).

        Returns
        -------
        (Stage or None, Stage or None)
            Previous and next: the technologist's where scored, else the stage offered there
            (None where neither, or outside the night).
        """
        scored = self.session.stages()
        suggested: list = [None] * len(scored)
        if self.key is not None:
            for i in (epoch - 1, epoch + 1):
                if 0 <= i < len(scored) and not scored[i].is_scored:
                    try:
                        found = self.suggestion(i)
                    except InputError:          # an unreadable neighbour is no neighbour
                        found = None
                    suggested[i] = None if found is None else found.stage
        return hypnogram_neighbours(scored, suggested, epoch)

    def checks(self, suggestion: Suggestion, evidence) -> tuple[list, list]:
        """The suggestion's rules and rationale checked against the epoch's signal.

        Parameters
        ----------
        suggestion : Suggestion
            As offered (its rules are judged against the model's reading).
        evidence : EpochEvidence
            The epoch's measurements (``core.trust.evidence``).

        Returns
        -------
        (list of RuleCheck, list of ClaimCheck)
            One verdict per cited rule (the neighbour-dependent rules against ``neighbours``)
            and per claim of the rationale.
        """
        rules = check_suggestion(suggestion, evidence, self.neighbours(suggestion.epoch))
        claims = check_claims(suggestion.rationale or "", evidence)
        return rules, claims

    # -- what changes what is offered ----------------------------------------------------
    def set_model(self, key: SuggestionKey | None) -> None:
        """The loaded model changed; emits ``suggestions_changed``.

        Parameters
        ----------
        key : SuggestionKey or None
            Its answers (the pass is dropped: both are read); None: no model.
        """
        self.key = None if key is None else key.for_pass(None)
        self.suggestions_changed.emit()

    def set_source(self, source: str) -> None:
        """Where the offered stage comes from; emits ``suggestions_changed`` when it changed.

        Parameters
        ----------
        source : str
            ``STAGER`` or ``MODEL`` (anything else is a ValueError).
        """
        source = check_source(source)
        if source != self.source:
            self.source = source
            self.suggestions_changed.emit()

    def answer_stored(self, epoch: int) -> None:
        """A scoring run stored an answer; emits ``suggestion_stored``.

        Parameters
        ----------
        epoch : int
            The epoch answered.
        """
        self.suggestion_stored.emit(int(epoch))

    @property
    def wants_second_opinion(self) -> bool:
        """The stage source is the stager, the study has none of its answers yet, and it has
        not already failed on this study: a night run should run it too."""
        return (self.source == STAGER and not self.stager_unavailable
                and not self.opinions())

    def store_second_opinion(self, result, evidence=None, *, scorer: str | None = None) -> int:
        """Store a second-opinion run and the evidence measured with it; the stages are then
        offered anew (``suggestions_changed``; the queue is rebuilt when asked).

        Parameters
        ----------
        result : SecondOpinionResult
            ``second_opinion.compute`` on this session's recording.
        evidence : list of EpochEvidence, optional
            ``measure_recording`` on it: the queue's signal checks from now on.
        scorer : str, optional
            Who ran it (default: the session's scorer).

        Returns
        -------
        int
            Epochs newly stored.
        """
        added = second_opinion.store(self.session.study, result, scorer or self.session.scorer)
        if evidence is not None:
            self.evidence = evidence
        self._opinions = None
        self.suggestions_changed.emit()
        return added

    def stager_failed(self) -> None:
        """The stager could not run on this study: it is not asked again, the model's stages
        are offered."""
        self.stager_unavailable = True

    # -- the review queue ----------------------------------------------------------------
    def rebuild_queue(self) -> ReviewQueue | None:
        """Rebuild the queue from the study, the second opinion and this session's evidence;
        emits ``queue_changed``. Only when asked: while a run stores answers a view throttles
        it. An unreadable study leaves no queue and raises (InputError)."""
        try:
            self.queue = build_queue(self.session.n_epochs, self.under_review(),
                                     second_opinions=self.opinions(), evidence=self.evidence)
        except BaseException:
            self.queue = None
            self.queue_changed.emit(None)
            raise
        self.queue_changed.emit(self.queue)
        return self.queue

    def reviewed_flags(self) -> tuple[list[int], list[int]]:
        """(flagged epochs, those of them the technologist has scored)."""
        if self.queue is None:
            return [], []
        stages = self.session.stages()
        return self.queue.flagged, [e for e in self.queue.flagged if stages[e].is_scored]

    def accept_unflagged(self) -> list[Decision]:
        """Accept the offered stage of every unflagged, unscored epoch of the queue (one
        audited transaction; ``ReviewSession.accept_unflagged``)."""
        if self.queue is None:
            return []
        return self.session.accept_unflagged(self.queue)

    # -- the technologist's answer -------------------------------------------------------
    def required(self, epoch: int | None = None, what: str = "") -> Suggestion:
        """The suggestion offered for an epoch, which must exist.

        Parameters
        ----------
        epoch : int, optional
            Default: the epoch on screen.
        what : str
            The start of the NoSuggestion message when there is none.

        Returns
        -------
        Suggestion
        """
        return self._required(epoch, what)

    def _required(self, epoch: int | None, what: str = "") -> Suggestion:
        suggestion = self.suggestion(epoch)
        if suggestion is None:
            raise NoSuggestion(f"{what}{NOT_SCORED_TEXT.lower()}" if what else NOT_SCORED_TEXT)
        return suggestion

    def contradicted(self, suggestion: Suggestion, evidence) -> list:
        """The cited rules the epoch's signal contradicts (accepting them deserves a pause).

        Parameters
        ----------
        suggestion : Suggestion
            As offered.
        evidence : EpochEvidence
            The epoch's measurements.

        Returns
        -------
        list of RuleCheck
            Those with the verdict ``contradicted`` ([] when none is, and where the stager led
            to another stage than the model read: the rules explain the model's reading, not
            the stage offered).
        """
        if suggestion.led and suggestion.stage is not suggestion.model_reading:
            return []
        rules = check_suggestion(suggestion, evidence, self.neighbours(suggestion.epoch))
        return [c for c in rules if c.verdict == CONTRADICTED]

    def accept(self, epoch: int | None = None, *, note: str | None = None) -> Decision:
        """Take the offered stage (source ai_accepted, audited with the suggestion), then move
        on like a stage key does.

        Parameters
        ----------
        epoch : int, optional
            Default: the epoch on screen.
        note : str, optional
            Kept with the decision (e.g. why a contradicted suggestion was accepted).

        Returns
        -------
        Decision

        Raises
        ------
        NoSuggestion
            Nothing was suggested for the epoch.
        ValueError
            The model named no stage there.
        """
        return self.session.accept_suggestion(self._required(epoch), note=note)

    def arm_override(self) -> None:
        """Override: the next stage the technologist names is scored against the suggestion
        (NoSuggestion when there is none on screen); emits ``override_armed_changed``."""
        self._required(None, "Nothing to override: ")
        self.override_armed = True
        self.override_armed_changed.emit(True)

    def cancel_override(self) -> None:
        """Disarm an armed override (emits ``override_armed_changed`` when it was armed)."""
        if self.override_armed:
            self.override_armed = False
            self.override_armed_changed.emit(False)

    def override_target(self, stage: Stage) -> Suggestion:
        """The suggestion ``stage`` would override on screen; disarms an armed override.

        Parameters
        ----------
        stage : Stage
            The technologist's stage.

        Returns
        -------
        Suggestion
            As offered.

        Raises
        ------
        NoSuggestion
            Nothing to override.
        ValueError
            ``stage`` is the suggested stage (accept it instead).
        """
        self.cancel_override()
        suggestion = self._required(None, "Nothing to override: ")
        if suggestion.stage is stage:
            raise ValueError(f"{stage.label} is the suggested stage: press Enter to accept it")
        return suggestion

    def override(self, stage: Stage, note: str | None, epoch: int | None = None, *,
                 suggestion: Suggestion | None = None) -> Decision:
        """Score ``stage`` against the offered suggestion (source ai_overridden).

        Parameters
        ----------
        stage : Stage
            The technologist's stage.
        note : str
            Why (required: an empty note is a ValueError, ``NOTE_REQUIRED``).
        epoch : int, optional
            Default: the epoch on screen.
        suggestion : Suggestion, optional
            The suggestion the technologist was shown (``override_target``): the override is
            recorded against it even if what is offered changed while the note was written
            (a second opinion stored meanwhile). Default: the one offered now.

        Returns
        -------
        Decision
        """
        if suggestion is None:
            suggestion = self._required(epoch)
        if not (note or "").strip():
            raise ValueError(NOTE_REQUIRED)
        return self.session.override_suggestion(suggestion, stage, note)

    def epoch_moved(self) -> None:
        """The technologist moved to another epoch: an armed override is dropped."""
        self.cancel_override()

