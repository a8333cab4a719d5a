"""The review of a night's suggestions, headless: what is offered (model or stager), the events
views redraw on, the evidence checks, the queue, and accept / override with their audit. A real
EDF night from the generator, a real study file, the stager's answers stored as a YASA run
stores them; no Qt anywhere (the window's views of this are in tests/ui)."""

from __future__ import annotations

import pytest
from review_study import dist, opinion

from sleepvlm_ws.core.base.stage_source import MODEL, STAGER
from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.model.answer import format_answer, parse_answer
from sleepvlm_ws.core.review.session import ReviewSession
from sleepvlm_ws.core.review.suggestion_review import (NOT_SCORED_TEXT, NOTE_REQUIRED, NoSuggestion,
                                                       SuggestionReview)
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study.study import AI_ACCEPTED, AI_OVERRIDDEN
from sleepvlm_ws.core.study.suggestions import FAST, RATIONALE, SuggestionKey, SuggestionStore
from sleepvlm_ws.core.synth import generate_night, write_night_edf
from sleepvlm_ws.core.trust.evidence import measure_recording
from sleepvlm_ws.core.trust.second_opinion import SecondOpinionResult

MODEL_ID = "a" * 64
KEY = SuggestionKey(MODEL_ID, RENDERER_VERSION)
METHOD = "yasa-0.8.1/clf_eeg"
STAGES = [Stage.W] * 3 + [Stage.N1] + [Stage.N2] * 4 + [Stage.N3] * 2
# what the model read; 9 has no answer
MODEL_SAID = {0: "W", 1: "W", 2: "W", 3: "N1", 4: "N2", 5: "N2", 6: "N2", 7: "N2", 8: "N2"}
# the stager: another stage at 3 and 8, nothing at 7
STAGER_SAID = {0: Stage.W, 1: Stage.W, 2: Stage.W, 3: Stage.N2, 4: Stage.N2, 5: Stage.N2,
               6: Stage.N2, 8: Stage.N3}


@pytest.fixture
def session(tmp_path):
    path = write_night_edf(generate_night(seed=11, fs=128.0, stages=STAGES), tmp_path / "n.edf")
    session = ReviewSession.open(path, scorer="amy")
    store = SuggestionStore(session.study)
    for epoch, stage in MODEL_SAID.items():
        store.put(epoch, parse_answer(format_answer(stage, [f"{stage}.1"])), KEY.for_pass(FAST),
                  stage_probabilities=dist(stage, 0.95))
    yield session
    session.close()


def _stager_run() -> SecondOpinionResult:
    return SecondOpinionResult(METHOD, len(STAGES), {"eeg": "C4 - M1"},
                               [opinion(e, METHOD, s, 0.8) for e, s in STAGER_SAID.items()])


class Heard:
    """Records what a review emitted, in order."""

    def __init__(self, review: SuggestionReview):
        self.events: list = []
        review.suggestions_changed.connect(lambda: self.events.append("suggestions"))
        review.suggestion_stored.connect(lambda e: self.events.append(("stored", e)))
        review.queue_changed.connect(lambda q: self.events.append(("queue", q)))
        review.override_armed_changed.connect(lambda on: self.events.append(("armed", on)))


def test_nothing_is_offered_without_a_model_and_loading_one_is_an_event(session):
    review = SuggestionReview(session)
    heard = Heard(review)
    assert review.suggestion(0) is None and review.suggestions() == {}
    with pytest.raises(NoSuggestion, match=NOT_SCORED_TEXT):
        review.accept(0)
    review.set_model(KEY.for_pass(RATIONALE))          # the pass is dropped: both are read
    assert review.key == KEY and heard.events == ["suggestions"]
    assert {e: s.stage.value for e, s in review.suggestions().items()} == MODEL_SAID
    assert review.suggestion(9) is None
    review.set_model(SuggestionKey("b" * 64, RENDERER_VERSION))     # another model: nothing here
    assert review.suggestions() == {}


def test_the_stager_leads_once_its_answers_are_stored_and_the_model_s_reading_is_kept(session):
    review = SuggestionReview(session, key=KEY, source=STAGER)
    heard = Heard(review)
    assert review.wants_second_opinion                  # none stored yet
    assert review.suggestion(3).stage is Stage.N1 and not review.suggestion(3).led
    evidence = measure_recording(session.recording, session.montage)
    assert review.store_second_opinion(_stager_run(), evidence) == len(STAGER_SAID)
    assert heard.events == ["suggestions"] and not review.wants_second_opinion
    three = review.suggestion(3)
    assert three.led and three.stage is Stage.N2 and three.model_reading is Stage.N1
    assert three.stage_source == METHOD and three.stage_probability == pytest.approx(0.8)
    assert review.suggestion(7).stage is Stage.N2 and not review.suggestion(7).led   # no answer
    review.set_source(MODEL)
    assert heard.events == ["suggestions", "suggestions"]
    assert review.suggestion(3).stage is Stage.N1 and not review.suggestion(3).led
    review.set_source(MODEL)                            # no change, no event
    assert heard.events == ["suggestions", "suggestions"]
    with pytest.raises(ValueError):
        review.set_source("the oracle")


def test_a_stager_that_cannot_run_is_not_asked_again(session):
    review = SuggestionReview(session, key=KEY)
    assert review.wants_second_opinion
    review.stager_failed()
    assert not review.wants_second_opinion
    assert not SuggestionReview(session, key=KEY, source=MODEL).wants_second_opinion


def test_the_queue_is_rebuilt_when_asked_and_accept_unflagged_takes_the_offered_stages(session):
    review = SuggestionReview(session, key=KEY)
    heard = Heard(review)
    review.store_second_opinion(_stager_run())
    queue = review.rebuild_queue()
    assert heard.events[-1] == ("queue", queue) and review.queue is queue
    # 3: the stager disagrees with the model (N2 vs N1) and N1; 8: it disagrees (N3 vs N2)
    assert {3, 8} <= set(queue.flagged) and 9 not in queue.suggestions
    flagged, reviewed = review.reviewed_flags()
    assert flagged == queue.flagged and reviewed == []
    decisions = review.accept_unflagged()
    accepted = {d.epoch for d in decisions}
    assert accepted == set(queue.acceptable([Stage.UNSCORED] * len(STAGES)))
    assert accepted and not accepted & set(queue.flagged)
    assert all(d.source == AI_ACCEPTED for d in decisions)
    for decision in decisions:      # the offered stage: the stager's where it led
        assert decision.stage is (STAGER_SAID.get(decision.epoch) or Stage(MODEL_SAID[decision.epoch]))
    assert review.reviewed_flags()[1] == []             # none of the flagged ones was taken


def test_without_a_loaded_model_the_queue_reviews_the_latest_model_s_suggestions(session):
    review = SuggestionReview(session)
    assert set(review.under_review()) == set(MODEL_SAID)
    assert set(review.rebuild_queue().suggestions) == set(MODEL_SAID)


def test_answers_stored_by_a_run_are_events_for_the_views(session):
    review = SuggestionReview(session, key=KEY)
    heard = Heard(review)
    SuggestionStore(session.study).put(9, parse_answer(format_answer("N3", ["N3.1"])),
                                       KEY.for_pass(FAST))
    review.answer_stored(9)
    assert heard.events == [("stored", 9)] and review.suggestion(9).stage is Stage.N3


def test_accept_records_the_offered_stage_and_moves_on(session):
    review = SuggestionReview(session, key=KEY)
    review.store_second_opinion(_stager_run())
    session.go_to(3)
    decision = review.accept()
    assert decision.epoch == 3 and decision.stage is Stage.N2 and decision.source == AI_ACCEPTED
    assert session.epoch == 4 and session.stage(3) is Stage.N2
    ref = session.study.audit_events()[-1].payload["suggestion"]
    assert ref["stage_source"] == METHOD and ref["model_stage"] == "N1"


def test_override_is_armed_disarmed_by_moving_and_needs_a_note(session):
    review = SuggestionReview(session, key=KEY, source=MODEL)
    heard = Heard(review)
    session.go_to(9)
    with pytest.raises(NoSuggestion, match="Nothing to override"):
        review.arm_override()
    assert not review.override_armed and heard.events == []
    session.go_to(4)
    review.arm_override()
    assert review.override_armed and heard.events == [("armed", True)]
    review.epoch_moved()
    assert not review.override_armed and heard.events[-1] == ("armed", False)
    review.arm_override()
    with pytest.raises(ValueError, match="N2 is the suggested stage: press Enter"):
        review.override_target(Stage.N2)
    assert not review.override_armed                    # a stage key always disarms
    assert review.override_target(Stage.N3).epoch == 4
    with pytest.raises(ValueError, match=NOTE_REQUIRED):
        review.override(Stage.N3, "  ")
    assert session.stage(4) is Stage.UNSCORED           # nothing was recorded
    decision = review.override(Stage.N3, "slow waves over 20 % of the epoch")
    assert decision.source == AI_OVERRIDDEN and decision.stage is Stage.N3
    assert session.stage(4) is Stage.N3 and session.epoch == 5


def test_checks_judge_the_model_s_reading_with_neighbours_from_the_hypnogram(session):
    review = SuggestionReview(session, key=KEY)
    evidence = {ev.index: ev for ev in measure_recording(session.recording, session.montage)}
    # neighbours: the technologist's stage where scored, else the stage offered there
    assert review.neighbours(5) == (Stage.N2, Stage.N2)
    session.go_to(4)
    session.score(Stage.N3)
    assert review.neighbours(5)[0] is Stage.N3
    assert review.neighbours(9) == (Stage.N2, None)      # no epoch after the last one
    rules, claims = review.checks(review.suggestion(1), evidence[1])
    assert [c.rule_id for c in rules] == ["W.1"] and claims == []


def test_an_override_is_recorded_against_the_suggestion_the_technologist_was_shown(session):
    """The stager's answers arrive while the note is being written: the override still refers
    to what the dialog asked about (the model's N1), not to the stage offered afterwards."""
    review = SuggestionReview(session, key=KEY)
    session.go_to(3)
    shown = review.override_target(Stage.N2)             # the model's N1 is on screen
    assert shown.stage is Stage.N1 and not shown.led
    review.store_second_opinion(_stager_run())           # meanwhile YASA says N2 for epoch 3
    assert review.suggestion(3).stage is Stage.N2
    decision = review.override(Stage.N2, "spindle at 21 s", suggestion=shown)
    assert decision.source == AI_OVERRIDDEN and decision.stage is Stage.N2
    ref = session.study.audit_events()[-1].payload["suggestion"]
    assert ref["suggested_stage"] == "N1" and "stage_source" not in ref


def test_the_decision_behind_an_epoch_s_stage_undo_included(session):
    review = SuggestionReview(session, key=KEY, source=MODEL)
    session.go_to(4)
    assert review.decision(4) is None
    review.override(Stage.N3, "slow waves over 20 % of the epoch")
    assert review.decision(4).source == AI_OVERRIDDEN and review.decision(4).note.startswith("slow")
    session.go_to(4)
    session.score(Stage.N2, advance=False)
    assert review.decision(4).source == "manual" and review.decision(4).stage is Stage.N2
    session.undo()                                        # the override stands again
    assert review.decision(4).source == AI_OVERRIDDEN and session.stage(4) is Stage.N3
    session.undo()
    assert review.decision(4) is None and session.stage(4) is Stage.UNSCORED
