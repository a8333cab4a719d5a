"""Other scorers in the study file (schema v5): stored append-only beside the study's own
scoring, imported from real files, audited; the consensus's ties adjudicated and audited; a
version-4 study gains the tables on open. The real five-scorer nights of the Dreem Open
Datasets go through the same path (read from ../shared/data, converted only into tmp_path)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from old_schema import schema_version

from sleepvlm_ws.core.base.hypnogram import Hypnogram
from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.signals.montage import Derivation, Montage
from sleepvlm_ws.core.study import audit, audit_verify, study_schema
from sleepvlm_ws.core.study.formats import HypnogramFormatError, export_hypnogram
from sleepvlm_ws.core.study.scorings import (CONSENSUS_ADJUDICATED, SCORING_IMPORTED, ScorerError,
                                             add_scoring, import_scoring, load_scorings, scorers)
from sleepvlm_ws.core.study.study import Study
from sleepvlm_ws.core.trust.inter_scorer import fleiss_kappa
from sleepvlm_ws.core.trust.study_consensus import OWN, adjudicate, compare_study_scorers, study_consensus

W, N1, N2, N3, R, U = Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R, Stage.UNSCORED
DOD = Path(__file__).resolve().parents[3] / "shared" / "data" / "hypnograms" / "dreem-dod" / "scorers"
DREEM = {-1: U, 0: W, 1: N1, 2: N2, 3: N3, 4: R}


def _study(path: Path, n_epochs: int = 6) -> Study:
    m = Montage()
    m.roles["C4-M1"] = Derivation("C4", "M1")
    return Study.create(path, recording_path="night.edf", n_epochs=n_epochs, montage=m, scorer="amy")


def _csv(tmp_path: Path, name: str, stages) -> Path:
    return export_hypnogram(Hypnogram(list(stages)), "csv", tmp_path / f"{name}.csv")


def test_an_imported_scoring_sits_beside_the_studys_own_and_is_audited(tmp_path):
    path = tmp_path / "s.sleepvlm"
    with _study(path) as s:
        s.score(0, W, scorer="amy")
        own_before = s.stages()
        scorer, warnings = import_scoring(s, _csv(tmp_path, "bob", [W, N1, N2, N2, N3, R]), "bob",
                                          actor="amy")
        assert warnings == [] and scorer.kind == "imported" and scorer.source == "bob.csv"
        assert s.stages() == own_before                      # the study's own scoring untouched
        assert load_scorings(s) == {"bob": [W, N1, N2, N2, N3, R]}
        event = [e for e in s.audit_events() if e.kind == SCORING_IMPORTED][-1]
        assert event.actor == "amy" and event.payload["scorer"] == "bob"
        assert event.payload["sha256"] == scorer.sha256 and len(scorer.sha256) == 64
        assert event.payload["stages"] == {"W": 1, "N1": 1, "N2": 2, "N3": 1, "R": 1}
        # a name is used once; reserved and empty names are refused, naming the study
        with pytest.raises(ScorerError, match="'BOB' already has a scoring"):
            import_scoring(s, _csv(tmp_path, "bob2", [W] * 6), "BOB", actor="amy")
        with pytest.raises(ScorerError, match="reserved"):
            add_scoring(s, "consensus", [W] * 6, kind="blind", source="amy", actor="amy")
        with pytest.raises(ScorerError, match="printable"):
            add_scoring(s, "  ", [W] * 6, kind="blind", source="amy", actor="amy")
        with pytest.raises(ScorerError, match="covers 5 epochs, the study 6"):
            add_scoring(s, "cho", [W] * 5, kind="blind", source="cho", actor="amy")
        with pytest.raises(HypnogramFormatError, match="missing.csv"):
            import_scoring(s, tmp_path / "missing.csv", "dan", actor="amy")
        assert [x.name for x in scorers(s)] == ["bob"]       # nothing half-written by the refusals
    assert audit_verify.verify(path).ok
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE scorer_stages SET stage = 'R' WHERE scorer = 'bob'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM scorers")
    finally:
        conn.close()


def test_ties_are_adjudicated_audited_and_go_stale_when_a_scoring_changes(tmp_path):
    path = tmp_path / "s.sleepvlm"
    with _study(path, n_epochs=4) as s:
        s.score_many([(0, W), (1, N1), (2, N2), (3, R)], scorer="amy")
        add_scoring(s, "bob", [W, N2, N2, R], kind="blind", source="bob", actor="amy")
        with pytest.raises(ScorerError, match="at least two"):
            study_consensus(_study(tmp_path / "empty.sleepvlm"))
        c = study_consensus(s)
        assert c.consensus.stages == (W, None, N2, R) and c.consensus.unsettled == [1]
        with pytest.raises(ScorerError, match="epoch 3 is not tied"):
            adjudicate(s, 2, N2, scorer="cho")
        with pytest.raises(ScorerError, match="tied between N1, N2, not R"):
            adjudicate(s, 1, R, scorer="cho")
        adj = adjudicate(s, 1, N1, scorer="cho", note="spindle-free, slow eye movements")
        assert adj.tied == (N1, N2)
        c = study_consensus(s)
        assert c.consensus.stages == (W, N1, N2, R) and c.consensus.unsettled == [] and list(c.applied) == [1]
        event = [e for e in s.audit_events() if e.kind == CONSENSUS_ADJUDICATED][-1]
        assert event.actor == "cho" and event.payload == {
            "epoch": 1, "stage": "N1", "tied": ["N1", "N2"], "note": "spindle-free, slow eye movements"}
        # amy rescores epoch 2 as N2: no longer a tie, so the adjudication no longer applies
        s.score(1, N2, scorer="amy")
        c = study_consensus(s)
        assert c.consensus.stages[1] is N2 and list(c.stale) == [1] and c.applied == {}
        # the AI compared as a further scorer, never part of the consensus
        report = compare_study_scorers(s, {"ai": [W, N2, N3, None]})
        assert report.scorers == (OWN, "bob", "ai") and report.fleiss.n_scorers == 2
        assert set(report.versus_others) == {"ai"}             # two technologists: only the AI
    assert audit_verify.verify(path).ok


def test_a_version_4_study_gains_the_scorer_tables_on_open(tmp_path, monkeypatch):
    path = tmp_path / "v4.sleepvlm"
    with schema_version(monkeypatch, 4):
        s = _study(path)
        s.score(2, N2, scorer="amy")
        before = s.audit_events()
        s.close()
    with Study.open(path) as s:
        assert s.meta["schema_version"] == study_schema.SCHEMA_VERSION == 5
        events = s.audit_events()
        assert events[:len(before)] == before
        assert [e.payload for e in events[len(before):] if e.kind == audit.SCHEMA_MIGRATED] == [
            {"from": 4, "to": 5}]
        add_scoring(s, "bob", [W] * 6, kind="blind", source="bob", actor="amy")
        assert load_scorings(s)["bob"] == [W] * 6
    assert audit_verify.verify(path).ok


@pytest.mark.skipif(not DOD.is_dir(), reason=f"Dreem DOD scorings absent ({DOD})")
def test_five_real_scorers_imported_into_a_study_agree_as_they_do_on_file(tmp_path):
    subset = DOD / "dodh"
    record = sorted(p.name for p in (subset / "scorer_1").glob("*.json"))[0]
    rows = [[DREEM[int(c)] for c in json.loads((subset / f"scorer_{k}" / record).read_text())]
            for k in range(1, 6)]
    n = min(len(r) for r in rows)
    rows = [r[:n] for r in rows]
    path = tmp_path / "dod.sleepvlm"
    with _study(path, n_epochs=n) as s:
        for k, r in enumerate(rows, start=1):          # each through a real file of our export
            import_scoring(s, _csv(tmp_path, f"scorer{k}", r), f"scorer {k}", actor="amy")
        assert list(load_scorings(s).values()) == rows
        report = compare_study_scorers(s)
        assert report.fleiss.kappa == pytest.approx(fleiss_kappa(rows).kappa)
        assert len(report.pairwise) == 10 and len(report.versus_others) == 5
        c = study_consensus(s)
        assert c.consensus.unsettled == list(c.consensus.ties)
        if c.consensus.ties:                           # settle the first tie with a tied stage
            e = c.consensus.ties[0]
            adjudicate(s, e, c.consensus.tied_stages(e)[0], scorer="amy")
            assert len(study_consensus(s).consensus.unsettled) == len(c.consensus.ties) - 1
    assert audit_verify.verify(path).ok
