"""AI suggestions in the study file: schema v1 -> v2, storing and reading, accept / override."""

from __future__ import annotations

import sqlite3

import pytest
from old_schema import schema_version

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.model.answer import format_answer, parse_answer
from sleepvlm_ws.core.signals.montage import Derivation, Montage
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study import audit, audit_verify, study_schema
from sleepvlm_ws.core.study.ai_runs import (AI_RUN_FINISHED, AI_RUN_STARTED, record_run_finished,
                                            record_run_started)
from sleepvlm_ws.core.study.study import AI_ACCEPTED, AI_OVERRIDDEN, Study
from sleepvlm_ws.core.study.suggestions import (FAST, RATIONALE, RATIONALE_DISAGREES, SuggestionKey,
                                                SuggestionStore, accept, override)
from sleepvlm_ws.errors import StudyError

MODEL = "a" * 64
RV = RENDERER_VERSION


def _montage() -> Montage:
    m = Montage()
    m.roles["C4-M1"] = Derivation("C4", "M1")
    return m


def _new_study(path, n_epochs=6) -> Study:
    return Study.create(path, recording_path="night.edf", n_epochs=n_epochs, montage=_montage(),
                        scorer="amy")


def _answer(stage="N2", rules=("N2.1",), rationale=None):
    return parse_answer(format_answer(stage, list(rules), rationale))


def _tables(path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def _schema_sql(path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in conn.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name LIKE 'suggestions%'"))
    finally:
        conn.close()


# ------------------------------------------------------------------------------ migration
def _write_v1_study(path, monkeypatch) -> None:
    """A study as the version-1 workstation wrote it (with a decision and an undo in it)."""
    with schema_version(monkeypatch, 1):
        s = _new_study(path)
        s.score(1, Stage.N1, scorer="amy")
        s.score(2, Stage.N2, scorer="amy", note="spindles")
        s.undo(scorer="amy")
        s.close()


def test_a_version_1_study_is_upgraded_on_open_and_still_verifies(tmp_path, monkeypatch):
    path = tmp_path / "old.sleepvlm"
    _write_v1_study(path, monkeypatch)
    assert "suggestions" not in _tables(path)
    assert audit_verify.verify(path).ok  # verifiable before it is touched

    with Study.open(path) as s:
        assert s.meta["schema_version"] == study_schema.SCHEMA_VERSION
        assert s.stages()[:3] == [Stage.UNSCORED, Stage.N1, Stage.UNSCORED]
        migrated = [e for e in s.audit_events() if e.kind == audit.SCHEMA_MIGRATED]
        assert [e.payload for e in migrated] == [
            {"from": v, "to": v + 1} for v in range(1, study_schema.SCHEMA_VERSION)]
        assert s.verify().ok
        SuggestionStore(s).put(3, _answer(), SuggestionKey(MODEL, RV, FAST))
    assert "suggestions" in _tables(path)
    assert audit_verify.verify(path).ok

    # opened again: no second migration; same schema as a study created at version 2
    with Study.open(path) as s:
        assert sum(e.kind == audit.SCHEMA_MIGRATED for e in s.audit_events()) == \
            study_schema.SCHEMA_VERSION - 1
    fresh = tmp_path / "new.sleepvlm"
    _new_study(fresh).close()
    assert _schema_sql(path) == _schema_sql(fresh) != []


def test_the_migration_is_all_or_nothing(tmp_path, monkeypatch):
    path = tmp_path / "old.sleepvlm"
    _write_v1_study(path, monkeypatch)

    def broken(conn):
        study_schema._add_suggestions(conn)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(study_schema.MIGRATIONS, 1, broken)
    with pytest.raises(StudyError, match="disk I/O error"):
        Study.open(path)
    assert "suggestions" not in _tables(path)
    monkeypatch.undo()
    with Study.open(path) as s:
        assert s.meta["schema_version"] == study_schema.SCHEMA_VERSION
        assert s.verify().ok


# ------------------------------------------------------------------------ store and read
def test_put_get_and_missing_epochs(tmp_path):
    with _new_study(tmp_path / "s.sleepvlm") as s:
        store = SuggestionStore(s)
        assert store.missing_epochs(SuggestionKey(MODEL, RV, FAST)) == [0, 1, 2, 3, 4, 5]
        assert store.get(2, SuggestionKey(MODEL, RV)) is None

        assert store.put(2, _answer("N3", ["N3.1"]), SuggestionKey(MODEL, RV, FAST),
                         prompt_tokens=700, completion_tokens=20, seconds=0.4)
        assert store.put(4, parse_answer("```json\n{'sleep_stage': 'deep sleep'}"),
                         SuggestionKey(MODEL, RV, FAST))
        # the same key again: refused quietly, the first answer stays
        assert not store.put(2, _answer("W", ["W.1"]), SuggestionKey(MODEL, RV, FAST))

        got = store.get(2, SuggestionKey(MODEL, RV))
        assert (got.epoch, got.stage, got.stage_text, got.rules) == (2, Stage.N3, "N3", ("N3.1",))
        assert (got.pass_name, got.prompt_tokens, got.completion_tokens, got.seconds) == \
               (FAST, 700, 20, 0.4)
        assert got.raw == format_answer("N3", ["N3.1"]) and got.created.endswith("Z")
        odd = store.get(4, SuggestionKey(MODEL, RV))
        assert odd.stage is None and "missing_rules" in odd.flags and odd.repaired
        assert store.missing_epochs(SuggestionKey(MODEL, RV, FAST)) == [0, 1, 3, 5]
        assert store.missing_epochs(SuggestionKey(MODEL, RV, FAST), epochs=[1, 2, 3]) == [1, 3]
        assert store.missing_epochs(SuggestionKey(MODEL, RV, RATIONALE)) == list(range(6))
        # another model or renderer version is another key
        assert store.missing_epochs(SuggestionKey("b" * 64, RV, FAST)) == list(range(6))
        assert store.get(2, SuggestionKey(MODEL, "svlm-render-0")) is None
        assert set(store.all_for(SuggestionKey(MODEL, RV))) == {2, 4}
        assert store.models() == [(SuggestionKey(MODEL, RV), 2)]

        # suggestions are not decisions and are not audited one by one
        assert s.stages() == [Stage.UNSCORED] * 6 and s.decisions() == []
        assert [e.kind for e in s.audit_events()] == [audit.STUDY_CREATED]
        assert s.verify().ok


def test_rationale_pass_gives_the_reasoning_fast_pass_keeps_the_stage(tmp_path):
    with _new_study(tmp_path / "s.sleepvlm") as s:
        store = SuggestionStore(s)
        store.put(1, _answer("N2", ["N2.1"]), SuggestionKey(MODEL, RV, FAST))
        store.put(1, _answer("N2", ["N2.1", "N2.2"], "Spindles at 12 s in C4-M1."),
                  SuggestionKey(MODEL, RV, RATIONALE))
        store.put(3, _answer("N1", ["N1.1"]), SuggestionKey(MODEL, RV, FAST))
        store.put(3, _answer("W", ["W.1"], "Alpha over O2-M1."), SuggestionKey(MODEL, RV, RATIONALE))
        store.put(5, _answer("R", ["R.1"], "Rapid eye movements."), SuggestionKey(MODEL, RV, RATIONALE))

        one = store.get(1, SuggestionKey(MODEL, RV))
        assert (one.stage, one.rules, one.rationale) == (Stage.N2, ("N2.1",),
                                                        "Spindles at 12 s in C4-M1.")
        assert RATIONALE_DISAGREES not in one.flags
        three = store.get(3, SuggestionKey(MODEL, RV))
        assert (three.stage, three.rationale_pass_stage) == (Stage.N1, Stage.W)
        assert RATIONALE_DISAGREES in three.flags and three.rationale == "Alpha over O2-M1."
        five = store.get(5, SuggestionKey(MODEL, RV))  # only the rationale pass ran
        assert (five.stage, five.pass_name, five.rationale) == (Stage.R, RATIONALE,
                                                               "Rapid eye movements.")
        assert store.get_pass(3, SuggestionKey(MODEL, RV, RATIONALE)).stage is Stage.W
        layer = store.all_for(SuggestionKey(MODEL, RV))
        assert {e: x.stage for e, x in layer.items()} == {1: Stage.N2, 3: Stage.N1, 5: Stage.R}
        assert store.missing_epochs(SuggestionKey(MODEL, RV, RATIONALE)) == [0, 2, 4]


def test_put_refuses_bad_keys(tmp_path):
    with _new_study(tmp_path / "s.sleepvlm") as s:
        store = SuggestionStore(s)
        with pytest.raises(ValueError, match="not a pass"):
            store.put(0, _answer(), SuggestionKey(MODEL, RV, "slow"))
        with pytest.raises(ValueError, match="model id"):
            store.put(0, _answer(), SuggestionKey("", RV, FAST))
        with pytest.raises(IndexError):
            store.put(6, _answer(), SuggestionKey(MODEL, RV, FAST))
        # one typed record: the runtime's wrapper (or a look-alike) is not an Answer
        with pytest.raises(TypeError, match="stores an Answer, not dict"):
            store.put(0, {"stage": "W"}, SuggestionKey(MODEL, RV, FAST))
        assert store.all_for(SuggestionKey(MODEL, RV)) == {}


def test_suggestions_are_append_only(tmp_path):
    path = tmp_path / "s.sleepvlm"
    with _new_study(path) as s:
        SuggestionStore(s).put(0, _answer(), SuggestionKey(MODEL, RV, FAST))
    conn = sqlite3.connect(path)
    try:
        for sql in ("UPDATE suggestions SET stage = 'W'", "DELETE FROM suggestions"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(sql)
    finally:
        conn.close()


def test_a_run_is_audited_once_at_start_and_once_at_end(tmp_path):
    with _new_study(tmp_path / "s.sleepvlm") as s:
        record_run_started(s, SuggestionKey(MODEL, RV), passes=[FAST],
                           epochs_to_score={FAST: 6}, actor="sleepvlm-ws")
        store = SuggestionStore(s)
        for epoch in range(6):
            store.put(epoch, _answer(), SuggestionKey(MODEL, RV, FAST))
        record_run_finished(s, SuggestionKey(MODEL, RV), outcome="completed",
                            counts={"stored": {FAST: 6}}, actor="sleepvlm-ws")
        kinds = [e.kind for e in s.audit_events()]
        assert kinds == [audit.STUDY_CREATED, AI_RUN_STARTED, AI_RUN_FINISHED]
        end = s.audit_events()[-1].payload
        assert end["model_id"] == MODEL and end["counts"]["stored"][FAST] == 6
        assert s.verify().ok


# -------------------------------------------------------------------- accept / override
def _stored(study, epoch, stage="N2", rules=("N2.1",)):
    store = SuggestionStore(study)
    store.put(epoch, _answer(stage, rules), SuggestionKey(MODEL, RV, FAST))
    return store.get(epoch, SuggestionKey(MODEL, RV))


def test_accept_is_an_audited_decision_naming_the_suggestion(tmp_path):
    path = tmp_path / "s.sleepvlm"
    with _new_study(path) as s:
        suggestion = _stored(s, 2, "N3", ["N3.1"])
        decision = accept(s, 2, suggestion, "amy")
        assert (decision.stage, decision.source, decision.note) == (Stage.N3, AI_ACCEPTED, None)
        assert s.stage(2) is Stage.N3
        event = s.audit_events()[-1]
        assert event.kind == audit.DECISION
        ref = event.payload["suggestion"]
        assert (ref["model_id"], ref["pass"], ref["suggested_stage"]) == (MODEL, FAST, "N3")
        assert ref["suggestion_id"] == suggestion.id
        with pytest.raises(ValueError, match="epoch 2, not epoch 3"):
            accept(s, 3, suggestion, "amy")
    assert audit_verify.verify(path).ok


def test_an_answer_without_a_stage_cannot_be_accepted(tmp_path):
    with _new_study(tmp_path / "s.sleepvlm") as s:
        store = SuggestionStore(s)
        store.put(0, parse_answer("I cannot tell."), SuggestionKey(MODEL, RV, FAST))
        with pytest.raises(ValueError, match="named no stage"):
            accept(s, 0, store.get(0, SuggestionKey(MODEL, RV)), "amy")
        assert s.decisions() == []


def test_override_needs_a_note_and_is_audited(tmp_path):
    path = tmp_path / "s.sleepvlm"
    with _new_study(path) as s:
        suggestion = _stored(s, 1, "N2", ["N2.1"])
        for note in (None, "", "   "):
            with pytest.raises(ValueError, match="note"):
                override(s, 1, Stage.N1, suggestion, "amy", note)
        with pytest.raises(ValueError, match="accept it"):
            override(s, 1, "N2", suggestion, "amy", "same thing")
        assert s.decisions() == [] and s.stage(1) is Stage.UNSCORED

        decision = override(s, 1, "N1", suggestion, "amy", "  no spindle, K-complex is an arousal ")
        assert (decision.stage, decision.source) == (Stage.N1, AI_OVERRIDDEN)
        assert decision.note == "no spindle, K-complex is an arousal"
        payload = s.audit_events()[-1].payload
        assert payload["source"] == AI_OVERRIDDEN and payload["note"] == decision.note
        assert payload["suggestion"]["suggested_stage"] == "N2"
        assert payload["suggestion"]["pass"] == FAST
        # the suggestion itself is untouched: it still says N2
        assert SuggestionStore(s).get(1, SuggestionKey(MODEL, RV)).stage is Stage.N2
        s.undo(scorer="amy")
        assert s.stage(1) is Stage.UNSCORED
    assert audit_verify.verify(path).ok


# ------------------------------------------------------------- the model's confidence (v4)
PROBS = {Stage.W: 0.05, Stage.N1: 0.1, Stage.N2: 0.8, Stage.N3: 0.05, Stage.R: 0.0}


def test_the_stage_probabilities_are_stored_and_read_back(tmp_path):
    path = tmp_path / "s.sleepvlm"
    with _new_study(path) as s:
        store = SuggestionStore(s)
        store.put(1, _answer("N2"), SuggestionKey(MODEL, RV, FAST),
                  stage_probabilities=PROBS)
        store.put(1, _answer("N3", ["N3.1"], "Slow waves."), SuggestionKey(MODEL, RV, RATIONALE),
                  stage_probabilities={"W": 0, "N1": 0, "N2": 0.4, "N3": 0.6, "R": 0})
        store.put(2, _answer("N2"), SuggestionKey(MODEL, RV, FAST))
        # no stage, no probability (whatever was handed in)
        store.put(3, parse_answer("no idea"), SuggestionKey(MODEL, RV, FAST),
                  stage_probabilities=PROBS)
        with pytest.raises(ValueError, match="summing to 1"):
            store.put(4, _answer("N2"), SuggestionKey(MODEL, RV, FAST),
                      stage_probabilities={"W": 0.5, "N2": 0.7})
    with Study.open(path) as s:                          # a fresh connection: read from disk
        store = SuggestionStore(s)
        one = store.get(1, SuggestionKey(MODEL, RV))                    # merged: the fast pass's probability
        assert one.stage is Stage.N2 and one.stage_probability == 0.8
        assert one.stage_probabilities == PROBS and one.rationale == "Slow waves."
        slow = store.get_pass(1, SuggestionKey(MODEL, RV, RATIONALE))
        assert slow.stage_probability == 0.6 and slow.stage_probabilities[Stage.N3] == 0.6
        assert store.get(2, SuggestionKey(MODEL, RV)).stage_probability is None
        assert store.get(2, SuggestionKey(MODEL, RV)).stage_probabilities is None
        assert store.get(3, SuggestionKey(MODEL, RV)).stage_probability is None
        assert store.missing_epochs(SuggestionKey(MODEL, RV, FAST)) == [0, 4, 5]
        # accepting it records the probability the technologist saw; without one, as before v4
        accept(s, 1, one, "amy")
        assert s.audit_events()[-1].payload["suggestion"]["stage_probability"] == 0.8
        accept(s, 2, store.get(2, SuggestionKey(MODEL, RV)), "amy")
        assert "stage_probability" not in s.audit_events()[-1].payload["suggestion"]
        assert s.verify().ok
        # the JSON export carries the trail, so the probability the decision was made on
        import json

        from sleepvlm_ws.core.study.export import export_study

        out = export_study(s, "json", tmp_path / "s.json", scorer="amy")
        refs = [e["payload"]["suggestion"] for e in json.loads(out.read_text())["audit"]
                if "suggestion" in e["payload"]]
        assert [r.get("stage_probability") for r in refs] == [0.8, None]
    conn = sqlite3.connect(path)
    try:                                                 # the columns are checked
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO suggestions(model_id, renderer_version, epoch, pass, "
                         "stage_text, stage, rules, flags, repaired, raw, created, "
                         "stage_probability) VALUES ('m', 'r', 0, 'fast', 'W', 'W', '[]', '[]', "
                         "'null', '', '', 1.5)")
    finally:
        conn.close()


def _write_v3_study(path, monkeypatch) -> list:
    """A study as the version-3 workstation wrote it: a suggestion, an accepted one, a decision."""
    with schema_version(monkeypatch, 3):
        s = _new_study(path)
        conn = s._live()
        for epoch, stage in ((1, "N2"), (2, "W")):      # the v3 columns only
            conn.execute(
                "INSERT INTO suggestions(model_id, renderer_version, epoch, pass, stage_text, "
                "stage, rules, rationale, flags, repaired, raw, prompt_tokens, "
                "completion_tokens, seconds, created) VALUES (?, ?, ?, 'fast', ?, ?, '[]', NULL, "
                "'[]', '[]', '', NULL, NULL, NULL, '2026-01-01T00:00:00.000000Z')",
                (MODEL, RV, epoch, stage, stage))
        s.score(3, Stage.N1, scorer="amy")
        events = s.audit_events()
        s.close()
    return events


def test_a_version_3_study_gains_the_probability_columns_and_old_rows_read_none(tmp_path,
                                                                               monkeypatch):
    path = tmp_path / "v3.sleepvlm"
    before = _write_v3_study(path, monkeypatch)
    assert audit_verify.verify(path).ok
    with Study.open(path) as s:
        assert s.meta["schema_version"] == study_schema.SCHEMA_VERSION >= 4
        events = s.audit_events()
        assert events[:len(before)] == before            # nothing old re-hashed or rewritten
        assert [e.payload for e in events[len(before):]] == [
            {"from": v, "to": v + 1} for v in range(3, study_schema.SCHEMA_VERSION)]
        store = SuggestionStore(s)
        old = store.get(1, SuggestionKey(MODEL, RV))
        assert old.stage is Stage.N2 and old.stage_probability is None
        assert old.stage_probabilities is None
        accept(s, 1, old, "amy")                         # reads as a v3 reference did
        assert set(s.audit_events()[-1].payload["suggestion"]) == {
            "model_id", "renderer_version", "pass", "suggested_stage", "stage_text", "rules",
            "suggestion_id"}
        store.put(4, _answer("N2"), SuggestionKey(MODEL, RV, FAST),
                  stage_probabilities=PROBS)
        assert store.get(4, SuggestionKey(MODEL, RV)).stage_probability == 0.8
        assert s.verify().ok
    assert audit_verify.verify(path).ok
    fresh = tmp_path / "new.sleepvlm"
    _new_study(fresh).close()
    assert _schema_sql(path) == _schema_sql(fresh) != []


def test_a_real_scoring_run_stores_the_runtime_s_probabilities(tmp_path):
    """The default pack through ScoringRun into a study on disk, read back, equal to what the
    runtime says for the same request."""
    pytest.importorskip("llama_cpp")
    from pathlib import Path

    from sleepvlm_ws.core.model.runtime import LocalRuntime
    from sleepvlm_ws.core.pipeline.scoring_run import EpochImageCache, ScoringRun, study_montage
    from sleepvlm_ws.core.signals.recording import Recording
    from sleepvlm_ws.core.synth import generate_night, write_night_edf

    edf = write_night_edf(generate_night(seed=31, fs=128.0,
                                         stages=[Stage.W, Stage.N1, Stage.N2, Stage.N2]),
                          tmp_path / "n.edf")
    pack = Path(__file__).resolve().parents[2] / "models" / "default"
    rec = Recording.open(edf)
    try:
        with LocalRuntime(pack, n_threads=1) as rt:
            study_path = tmp_path / "n.sleepvlm"
            montage = study_montage(rec, study_path, "amy")
            summary = ScoringRun(rec, montage, study_path, rt).run()
            assert summary.outcome == "completed" and summary.stored[FAST] == 4
            direct = rt.suggest(EpochImageCache(rec, montage).request_images(2, rec.n_epochs),
                                rationale=False)
            model_id = rt.model_id
    finally:
        rec.close()
    with Study.open(study_path) as s:
        layer = SuggestionStore(s).all_for(SuggestionKey(model_id, RV))
        assert sorted(layer) == [0, 1, 2, 3]
        for x in layer.values():
            assert x.stage is not None and x.stage_probability is not None
            assert sum(x.stage_probabilities.values()) == pytest.approx(1.0)
            assert x.stage_probability == x.stage_probabilities[x.stage]
        assert layer[2].stage is direct.answer.stage
        assert layer[2].stage_probability == pytest.approx(direct.stage_probability, abs=1e-12)
        assert s.verify().ok
