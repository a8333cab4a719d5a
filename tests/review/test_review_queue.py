"""The review queue on hand-built suggestions in a real study; bulk acceptance, audited."""

from __future__ import annotations

import pytest
from review_study import dist, opinion, scored_study

from sleepvlm_ws.cli import main as cli_main
from sleepvlm_ws.core.base.answer import Answer
from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.model.answer import format_answer
from sleepvlm_ws.core.review.review_queue import (ANSWER_FLAGGED, BULK_ACCEPT, BULK_NOTE, CONTRADICTED,
                                                  DISAGREES, LOW_CONF, MODEL_LOW_CONFIDENCE, N1, NO_STAGE,
                                                  TRANSITION, accept_unflagged, build_queue, status_text)
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study import audit, audit_verify
from sleepvlm_ws.core.study.study import AI_ACCEPTED
from sleepvlm_ws.core.study.suggestions import SuggestionKey, SuggestionStore
from sleepvlm_ws.core.trust import second_opinion
from sleepvlm_ws.core.trust.evidence import EpochEvidence

MODEL = "m" * 64
METHOD = "yasa-test/clf_eeg"
N = 12


def _EdgeAnswer() -> Answer:   # what a scoring run stores for an epoch at the recording's edge
    return Answer(Stage.W, "W", ["W.1"], None, ["edge_epoch"], [], raw='{"sleep_stage": "W"}')


# epoch -> what the model printed (11 has no suggestion)
ANSWERS = {
    0: _EdgeAnswer(),
    1: format_answer("W", ["W.1"]),
    2: format_answer("W", ["W.1"]),
    3: format_answer("N1", ["N1.1"]),
    4: format_answer("N2", ["N2.1"]),
    5: format_answer("N2", ["N2.1"]),
    6: format_answer("N2", ["N2.1"]),
    7: format_answer("N2", ["R.1"]),          # a rule of another stage: flagged by the parser
    8: "the stage is deep sleep",             # no stage at all
    9: format_answer("N2", ["N2.1"]),
    10: format_answer("N2", ["N2.1"]),        # but no spindle or K complex is measured
}
# epoch -> (second opinion's stage, its probability)
OPINIONS = {2: (Stage.W, 0.9), 4: (Stage.N2, 0.8), 5: (Stage.N3, 0.7), 6: (Stage.N2, 0.4),
            9: (Stage.N2, 0.95), 10: (Stage.N2, 0.9)}


def _evidence() -> list[EpochEvidence]:
    out = []
    for e in range(N):
        ev = EpochEvidence(index=e, measurable={i: True for i in ("alpha", "spindles",
                                                                  "slow_waves", "rems", "chin")})
        ev.alpha_fraction = 0.8 if e <= 2 else 0.1
        if 4 <= e <= 9:
            ev.spindles = [("C4-M1", 5.0, 1.0, 13.0, 40.0)]
        out.append(ev)
    return out


@pytest.fixture
def study(tmp_path):
    s = scored_study(tmp_path / "q.sleepvlm", N, ANSWERS, model_id=MODEL, method=METHOD,
                     opinions=[opinion(e, METHOD, st, p) for e, (st, p) in OPINIONS.items()])
    yield s
    s.close()


def _queue(study, evidence=True):
    return build_queue(N, SuggestionStore(study).all_for(SuggestionKey(MODEL, RENDERER_VERSION)),
                       second_opinions=second_opinion.load(study),
                       evidence=_evidence() if evidence else None)


def test_each_reason_flags_its_epoch(study):
    q = _queue(study)
    codes = {e: [r.code for r in q.item(e).reasons] for e in q.flagged}
    assert codes == {
        2: [TRANSITION],                    # W before N1
        3: [N1, TRANSITION],
        4: [TRANSITION],                    # N2 after N1
        5: [DISAGREES],                     # the second opinion says N3
        6: [LOW_CONF],                      # it says N2, but only 40 % sure
        7: [CONTRADICTED, ANSWER_FLAGGED],  # R.1 cited for N2 (and spindles are measured)
        8: [NO_STAGE],
        10: [CONTRADICTED],                 # N2.1 cited, no spindle or K complex measured
    }
    assert "N3 (70%)" in q.item(5).describe()
    assert "N2.1" in q.item(10).describe()
    # the edge flag is informational, and 0, 1 and 9 have nothing else: unflagged
    assert not {0, 1, 9, 11} & set(q.flagged)
    assert q.criteria["second_opinion"] == METHOD and q.criteria["evidence_checked"]


def test_without_evidence_nothing_is_called_contradicted(study):
    q = _queue(study, evidence=False)
    assert 10 not in q.flagged and not q.criteria["evidence_checked"]


def test_priority_order_and_navigation(study):
    q = _queue(study)
    assert [it.epoch for it in q.by_priority()] == [7, 8, 5, 10, 3, 6, 2, 4]
    assert q.next_after(0) == 2 and q.next_after(2) == 3 and q.next_after(8) == 10
    assert q.next_after(10) is None and q.next_after(11) is None
    assert q.previous_before(2) is None and q.previous_before(10) == 8
    assert q.previous_before(9) == 8 and q.previous_before(11) == 10
    stages = study.stages()
    assert q.next_by_priority(stages) == 7                 # highest priority first, not in time
    study.score(7, Stage.N2, scorer="amy")
    assert q.next_by_priority(study.stages()) == 8
    for epoch in (8, 5, 10, 3, 6, 2, 4):
        study.score(epoch, Stage.N2, scorer="amy")
    assert q.next_by_priority(study.stages()) is None      # every flag reviewed


def test_reviewed_counts_follow_the_technologists_decisions(study):
    q = _queue(study)
    assert q.counts(study.stages()) == (0, 8)
    assert status_text(q, study.stages()) == (
        "reviewed 0 of 8 flagged (no stage 1, disagrees 1, contradicted 2, answer flagged 1, "
        "unsure 1, N1 1, stage change 3)")
    study.score(3, Stage.N1, scorer="amy")
    study.score(9, Stage.N2, scorer="amy")        # unflagged: does not count
    assert q.counts(study.stages()) == (1, 8)
    study.undo(scorer="amy")
    study.undo(scorer="amy")                      # back to unscored: not reviewed any more
    assert q.counts(study.stages()) == (0, 8)
    assert status_text(build_queue(N, {}), study.stages()) == ""


def test_bulk_accept_takes_every_unflagged_unscored_suggestion_audited(study, tmp_path):
    study.score(1, Stage.N1, scorer="amy")        # the technologist already scored this one
    q = _queue(study)
    assert q.acceptable(study.stages()) == [0, 9]
    before = len(study.audit_events())

    decisions = accept_unflagged(study, q, "amy")

    assert [(d.epoch, d.stage, d.source, d.note) for d in decisions] == [
        (0, Stage.W, AI_ACCEPTED, BULK_NOTE), (9, Stage.N2, AI_ACCEPTED, BULK_NOTE)]
    stages = study.stages()
    assert stages[0] is Stage.W and stages[9] is Stage.N2 and stages[1] is Stage.N1
    assert all(stages[e] is Stage.UNSCORED for e in q.flagged)
    new = study.audit_events()[before:]
    assert [e.kind for e in new] == [BULK_ACCEPT, audit.DECISION, audit.DECISION]
    assert new[0].payload["count"] == 2
    assert new[0].payload["criteria"]["low_confidence_below"] == 0.5
    assert new[0].payload["models"] == [[MODEL, RENDERER_VERSION]]
    assert new[1].payload["suggestion"]["suggested_stage"] == "W"
    assert study.verify().ok
    # nothing left: nothing written
    assert accept_unflagged(study, q, "amy") == []
    assert len(study.audit_events()) == before + 3
    study.close()
    assert audit_verify.verify(tmp_path / "q.sleepvlm").ok
    assert cli_main(["audit", "verify", str(tmp_path / "q.sleepvlm")]) == 0


def test_bulk_accept_is_all_or_nothing(study):
    q = _queue(study)
    before = len(study.audit_events())
    # a stale queue naming an epoch the study does not have fails the whole transaction
    bad = build_queue(N + 1, {**q.suggestions, N: q.suggestions[9]})
    with pytest.raises(ValueError, match="covers"):
        accept_unflagged(study, bad, "amy")
    with pytest.raises(ValueError, match="is for epoch 9"):   # the last of three fails
        accept_unflagged(study, build_queue(N, {0: q.suggestions[0], 1: q.suggestions[1],
                                                 3: q.suggestions[9]}), "amy")
    assert len(study.audit_events()) == before
    assert study.stages() == [Stage.UNSCORED] * N
    assert study.verify().ok


# ------------------------------------------------------------- the model's own confidence
# epoch -> (stage, the model's probability for it; None: not stored); every answer cites
# nothing and the stages form runs, so only the probability and stage changes flag
CONFIDENT = {0: ("W", 0.99), 1: ("W", 0.45), 2: ("W", 0.97), 3: ("N2", 0.30), 4: ("N2", 0.95),
             5: ("N2", 0.55), 6: ("N2", None), 7: ("N2", 0.49), 8: ("N2", 0.98), 9: ("N2", 0.96)}


@pytest.fixture
def confident_study(tmp_path):
    answers = {e: format_answer(stage, []) for e, (stage, _) in CONFIDENT.items()} | {10: "no idea"}
    s = scored_study(tmp_path / "c.sleepvlm", N, answers, model_id=MODEL, central_eeg=False,
                     probabilities={e: dist(stage, p) for e, (stage, p) in CONFIDENT.items()
                                    if p is not None})
    yield s
    s.close()


def test_a_low_model_probability_flags_the_epoch_with_its_figure(confident_study):
    q = build_queue(N, SuggestionStore(confident_study).all_for(SuggestionKey(MODEL, RENDERER_VERSION)))
    codes = {e: [r.code for r in q.item(e).reasons] for e in q.flagged}
    assert codes == {1: [LOW_CONF], 2: [TRANSITION], 3: [LOW_CONF, TRANSITION], 5: [LOW_CONF],
                     7: [LOW_CONF], 10: [NO_STAGE]}
    assert q.item(1).describe() == "model unsure (45% W)"
    assert q.criteria["model_low_confidence_below"] == MODEL_LOW_CONFIDENCE == 0.9
    assert 4 not in q.flagged and 6 not in q.flagged           # 95 %; unknown is never "unsure"
    # a laxer threshold lets 55 % through
    lax = build_queue(N, q.suggestions, model_low_confidence=0.5)
    assert 5 not in lax.flagged and 1 in lax.flagged
    # both unsure: one reason naming both
    unsure = {7: opinion(7, METHOD, Stage.N2, 0.4)}
    both = build_queue(N, q.suggestions, second_opinions=unsure)
    assert [r.code for r in both.item(7).reasons] == [LOW_CONF]
    assert both.item(7).describe() == "model unsure (49% N2); second opinion unsure (40%)"


def test_worst_first_order_while_next_flagged_stays_in_time(confident_study):
    q = build_queue(N, SuggestionStore(confident_study).all_for(SuggestionKey(MODEL, RENDERER_VERSION)))
    assert q.flagged == [1, 2, 3, 5, 7, 10]
    # the least confident first (no stage counts as 0)
    assert [it.epoch for it in q.least_confident()] == [10, 3, 1, 7, 5, 2]
    assert [q.confidence(e) for e in (10, 3, 6, 11)] == [0.0, 0.3, None, None]
    stages = confident_study.stages()
    assert q.next_least_confident(stages) == 10
    confident_study.score(10, Stage.N2, scorer="amy")
    confident_study.score(3, Stage.N2, scorer="amy")
    assert q.next_least_confident(confident_study.stages()) == 1
    # F / ] keep walking the night in time
    assert q.next_after(0) == 1 and q.next_after(1) == 2 and q.next_after(3) == 5
    assert q.previous_before(7) == 5
    for e in q.flagged:
        confident_study.score(e, Stage.N2, scorer="amy")
    assert q.next_least_confident(confident_study.stages()) is None


def test_suggestions_without_probabilities_come_last_in_worst_first_order(study):
    # the hand-built study above stores none: worst first is then priority order
    q = _queue(study)
    assert [it.epoch for it in q.least_confident()][0] == 8          # no stage: 0
    assert [it.epoch for it in q.least_confident()][1:] == [it.epoch for it in q.by_priority()
                                                            if it.epoch != 8]
