"""The suggested stage led by the real-trained stager: what is offered, what the queue judges,
what an accepted or overridden decision records, and what the exports and report say.
Real study files; the stager's answers are stored through second_opinion.store as a YASA run
stores them (YASA itself runs in tests/ui/test_ui_review.py)."""

from __future__ import annotations

import csv
import json

import pyedflib
import pytest
from review_study import dist, opinion, scored_study

from sleepvlm_ws.core.base.stage_source import MODEL, STAGER, check_source
from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.model.answer import format_answer
from sleepvlm_ws.core.model.settings import ModelSettings
from sleepvlm_ws.core.review.review_queue import DISAGREES, LOW_CONF, accept_unflagged, build_queue
from sleepvlm_ws.core.review.suggested_stage import lead, lead_all, source_text
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study.export import export_study
from sleepvlm_ws.core.study.formats import import_hypnogram
from sleepvlm_ws.core.study.study import AI_ACCEPTED, AI_OVERRIDDEN
from sleepvlm_ws.core.study.suggestions import SuggestionKey, SuggestionStore, accept, override
from sleepvlm_ws.core.trust import second_opinion
from sleepvlm_ws.core.trust.report_content import gather

MODEL_ID = "m" * 64
METHOD = "yasa-0.8.1/clf_eeg+eog"
N = 8
# epoch -> (the model's stage, its probability); 7 has no suggestion
MODEL_SAID = {0: ("W", 0.97), 1: ("W", 0.97), 2: ("N1", 0.60), 3: ("N2", 0.95), 4: ("N2", 0.95),
              5: ("N2", 0.96), 6: ("R", 0.92)}
# epoch -> the stager's stage (probability 0.8); 6 and 7 have none
STAGER_SAID = {0: Stage.W, 1: Stage.W, 2: Stage.N2, 3: Stage.N2, 4: Stage.N2, 5: Stage.N3}


@pytest.fixture
def study(tmp_path):
    s = scored_study(tmp_path / "led.sleepvlm", N,
                     {e: format_answer(stage, [f"{stage}.1"]) for e, (stage, _) in MODEL_SAID.items()},
                     model_id=MODEL_ID,
                     probabilities={e: dist(stage, p) for e, (stage, p) in MODEL_SAID.items()},
                     opinions=[opinion(e, METHOD, st, 0.8) for e, st in STAGER_SAID.items()],
                     method=METHOD)
    yield s
    s.close()


def _offered(study, source=STAGER):
    return lead_all(SuggestionStore(study).all_for(SuggestionKey(MODEL_ID, RENDERER_VERSION)),
                    second_opinion.load(study), source)


def test_the_stager_leads_where_it_has_an_answer_and_the_model_s_reading_is_kept(study):
    offered = _offered(study)
    assert {e: s.stage for e, s in offered.items()} == {
        0: Stage.W, 1: Stage.W, 2: Stage.N2, 3: Stage.N2, 4: Stage.N2, 5: Stage.N3, 6: Stage.R}
    one = offered[2]
    assert one.led and one.stage_source == METHOD
    assert (one.model_stage, one.model_reading) == (Stage.N1, Stage.N1)
    assert one.stage_probability == pytest.approx(0.8)
    assert one.model_probability == pytest.approx(0.60, abs=1e-6)
    assert one.rules == ("N1.1",)                    # the model's rules, for its own reading
    assert not offered[6].led and offered[6].model_reading is Stage.R   # no stager answer here
    assert source_text(one) == "YASA 0.8.1 (EEG + EOG), trained on real nights"
    assert source_text(offered[6]) == "the model"
    # the model as the source: nothing changes
    plain = _offered(study, MODEL)
    assert not any(s.led for s in plain.values()) and plain[2].stage is Stage.N1
    assert lead(offered[2], None) is offered[2]


def test_an_accepted_or_overridden_led_stage_records_both_readings(study):
    offered = _offered(study)
    decision = accept(study, 2, offered[2], "amy")
    assert (decision.stage, decision.source) == (Stage.N2, AI_ACCEPTED)
    ref = study.audit_events()[-1].payload["suggestion"]
    assert ref["stage_source"] == METHOD and ref["suggested_stage"] == "N2"
    assert ref["model_stage"] == "N1" and ref["model_stage_probability"] == pytest.approx(0.6)
    assert ref["model_id"] == MODEL_ID
    decision = override(study, 5, Stage.N2, offered[5], "amy", "no slow waves over 20 %")
    assert decision.source == AI_OVERRIDDEN
    ref = study.audit_events()[-1].payload["suggestion"]
    assert (ref["suggested_stage"], ref["model_stage"], ref["stage_source"]) == ("N3", "N2", METHOD)
    with pytest.raises(ValueError, match="accept it instead"):
        override(study, 2, Stage.N2, offered[2], "amy", "same stage")
    accept(study, 6, offered[6], "amy")                 # the model's own stage
    assert "stage_source" not in study.audit_events()[-1].payload["suggestion"]
    assert study.verify().ok


def test_the_queue_judges_the_model_s_reading_and_bulk_accepts_the_offered_stage(study):
    q = build_queue(N, _offered(study), second_opinions=second_opinion.load(study))
    reasons = {e: [r.code for r in q.item(e).reasons] for e in q.flagged}
    assert DISAGREES in reasons[2] and LOW_CONF in reasons[2]     # model N1 at 60 % vs N2
    assert "second opinion: N2 (80%), model: N1" in q.item(2).describe()
    assert DISAGREES in reasons[5]                                # model N2 vs the stager's N3
    assert 0 not in q.flagged and 3 not in q.flagged
    assert q.confidence(2) == pytest.approx(0.6, abs=1e-6)        # worst first: the model's own
    decisions = accept_unflagged(study, q, "amy")
    assert [(d.epoch, d.stage) for d in decisions] == [(0, Stage.W), (3, Stage.N2)]
    assert study.audit_events()[-1].payload["suggestion"]["stage_source"] == METHOD


def test_exports_and_report_say_where_each_accepted_stage_came_from(study, tmp_path):
    offered = _offered(study)
    accept(study, 2, offered[2], "amy")                 # the stager's N2
    accept(study, 6, offered[6], "amy")                 # the model's R
    study.score(7, Stage.R, scorer="amy")               # by hand
    override(study, 5, Stage.N1, offered[5], "amy", "arousal")   # the scorer's stage, not YASA's
    accept(study, 3, offered[3], "amy")
    study.undo(scorer="amy")                            # no longer stands
    out = export_study(study, "csv", tmp_path / "h.csv", scorer="amy")
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["suggested_by"] for r in rows] == ["", "", METHOD, "", "", METHOD, f"model:{MODEL_ID}", ""]
    assert [r["source"] for r in rows][5] == AI_OVERRIDDEN
    assert [r["source"] for r in rows][2] == AI_ACCEPTED
    doc = json.loads(export_study(study, "json", tmp_path / "h.json", scorer="amy").read_text())
    by_epoch = {d["epoch"]: d["suggested_by"] for d in doc["decisions"]}
    assert by_epoch == {2: METHOD, 3: None, 5: METHOD, 6: f"model:{MODEL_ID}", 7: None}
    tsv = export_study(study, "tsv", tmp_path / "h_events.tsv", scorer="amy").read_text()
    assert [line.split("\t")[-1] for line in tsv.splitlines()] == [
        "suggested_by", "n/a", "n/a", METHOD, "n/a", "n/a", "n/a", f"model:{MODEL_ID}", "n/a"]
    xml = export_study(study, "xml", tmp_path / "h.xml", scorer="amy").read_text()
    assert (f"<!-- stages accepted from suggestions: 1 suggested by model:{MODEL_ID[:12]}, 1 by {METHOD} -->"
            in xml)
    edf = export_study(study, "edf", tmp_path / "h.edf", scorer="amy")
    with pyedflib.EdfReader(str(edf)) as reader:
        assert "suggested:YASA_1,model_1" in reader.getRecordingAdditional()
    for path in (tmp_path / "h_events.tsv", tmp_path / "h.xml", edf):   # still read back
        assert import_hypnogram(path, n_epochs=N).stages[2] is Stage.N2
    header = dict(gather(study, author="amy").header)
    assert header["Suggested stages"] == (
        "standing as accepted: 1 from YASA's stager (trained on real nights; it led where it "
        "could stage the epoch), 1 from the model pack")


def test_the_source_is_a_checked_setting():
    assert ModelSettings.defaults().suggested_stage_from == STAGER
    assert ModelSettings(suggested_stage_from="oracle").checked().suggested_stage_from == STAGER
    assert ModelSettings(suggested_stage_from=MODEL).checked().suggested_stage_from == MODEL
    with pytest.raises(ValueError, match="one of stager, model"):
        check_source("yasa")


def test_a_stager_answer_for_another_epoch_is_refused(study):
    offered = _offered(study, MODEL)
    other = second_opinion.load(study)[0]
    with pytest.raises(ValueError, match="epoch 0, the suggestion for epoch 3"):
        lead(offered[3], other)
