"""The audit trail: hash-chained, append-only, and verify() names the first event a tamperer
broke. Tampering is done the way an attacker would: a separate sqlite3 connection that first
drops the append-only triggers."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.signals.montage import Derivation, Montage
from sleepvlm_ws.core.study.audit import event_hash, genesis_hash
from sleepvlm_ws.core.study.audit_verify import VerifyResult, verify
from sleepvlm_ws.core.study.study import AI_ACCEPTED, Study

TRIGGERS = ("audit_events_append_only_update", "audit_events_append_only_delete",
            "decisions_append_only_update", "decisions_append_only_delete")


@pytest.fixture
def study_path(tmp_path):
    """A study with nine events:
    1 study_created, 2 decision e0 W, 3 decision e1 N2, 4 decision e2 R, 5 montage_set,
    6 decision e1 N3, 7 undo (e1 back to N2), 8 export, 9 decision e3 N1."""
    path = tmp_path / "night.edf.sleepvlm"
    study = Study.create(path, recording_path=tmp_path / "night.edf", n_epochs=20,
                         montage=Montage(), scorer="amy")
    study.score(0, Stage.W, scorer="amy")
    study.score(1, Stage.N2, scorer="amy", note="spindles")
    study.score(2, Stage.R, scorer="bob", source=AI_ACCEPTED)
    montage = Montage()
    montage.roles["C4-M1"] = Derivation("C4", "M1")
    study.set_montage(montage, scorer="amy")
    study.score(1, Stage.N3, scorer="amy")
    study.undo(scorer="amy")
    study.record_event("export", {"format": "csv", "file": "night.csv"}, "amy")
    study.score(3, Stage.N1, scorer="amy")
    assert [e.kind for e in study.audit_events()] == [
        "study_created", "decision", "decision", "decision", "montage_set", "decision", "undo",
        "export", "decision"]
    study.close()
    return path


def tamper(path, *statements):
    """Each statement: SQL text, or (SQL, parameters)."""
    conn = sqlite3.connect(path)
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    for statement in statements:
        sql, params = (statement, ()) if isinstance(statement, str) else statement
        conn.execute(sql, params)
    conn.commit()
    conn.close()


def event_row(path, seq):
    conn = sqlite3.connect(path)
    row = conn.execute("SELECT seq, time, actor, kind, payload, prev_hash, hash FROM audit_events "
                       "WHERE seq = ?", (seq,)).fetchone()
    conn.close()
    return row


def assert_broken(result: VerifyResult, seq: int | None, *words: str):
    assert not result.ok and not result
    assert result.first_bad_seq == seq, result.reason
    for word in words:
        assert word in result.reason, result.reason
    assert "\n" not in result.reason


def test_intact_study_verifies(study_path):
    result = verify(study_path)
    assert result.ok and result.first_bad_seq is None and result.n_events == 9
    assert result.reason.startswith("9 events") and "\n" not in result.reason


def test_hash_follows_the_documented_recipe(study_path):
    """An outside auditor can recompute the chain from the module docstring alone."""
    conn = sqlite3.connect(study_path)
    study_id = conn.execute("SELECT value FROM meta WHERE key = 'study_id'").fetchone()[0]
    rows = conn.execute("SELECT seq, time, actor, kind, payload, prev_hash, hash FROM audit_events "
                        "ORDER BY seq").fetchall()
    head = dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'audit_head%'"))
    conn.close()
    prev = hashlib.sha256(("sleepvlm-ws audit genesis " + study_id).encode()).hexdigest()
    assert prev == genesis_hash(study_id)
    for seq, time, actor, kind, payload, prev_hash, digest in rows:
        body = json.dumps({"seq": seq, "time": time, "actor": actor, "kind": kind,
                           "payload": json.loads(payload), "prev_hash": prev_hash},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert prev_hash == prev
        assert digest == hashlib.sha256(body.encode()).hexdigest()
        assert digest == event_hash(seq, time, actor, kind, json.loads(payload), prev_hash)
        prev = digest
    assert head == {"audit_head_seq": "9", "audit_head_hash": prev}
    decision = json.loads(rows[2][4])
    assert decision == {"decision": 2, "epoch": 1, "stage": "N2", "previous": "?",
                        "source": "manual", "note": "spindles"}


@pytest.mark.parametrize("sql", [
    "UPDATE audit_events SET actor = 'eve' WHERE seq = 3",
    "DELETE FROM audit_events WHERE seq = 9",
    "UPDATE decisions SET stage = 'W' WHERE id = 1",
    "DELETE FROM decisions WHERE id = 1",
])
def test_triggers_refuse_edits_of_the_trail_and_decisions(study_path, sql):
    conn = sqlite3.connect(study_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(sql)
    conn.close()
    assert verify(study_path).ok


def test_edited_payload_is_named(study_path):
    tamper(study_path, "UPDATE audit_events SET payload = replace(payload, '\"N2\"', '\"N3\"') "
                       "WHERE seq = 3")
    assert_broken(verify(study_path), 3, "event 3 (decision, epoch 1): hash does not match")


@pytest.mark.parametrize("column, value", [("time", "2020-01-01T00:00:00.000000Z"),
                                           ("actor", "eve")])
def test_edited_time_or_actor_is_named(study_path, column, value):
    tamper(study_path, (f"UPDATE audit_events SET {column} = ? WHERE seq = 6", (value,)))
    assert_broken(verify(study_path), 6, "event 6 (decision, epoch 1)", "hash does not match")


def test_stage_changed_in_the_epochs_table_only(study_path):
    tamper(study_path, "UPDATE epochs SET stage = 'W' WHERE epoch = 2")
    assert_broken(verify(study_path), 4, "event 4 (decision, epoch 2)",
                  "epochs table shows epoch 2 as W", "leaves it at R")


def test_stage_of_a_never_scored_epoch_changed(study_path):
    tamper(study_path, "UPDATE epochs SET stage = 'N3' WHERE epoch = 15")
    assert_broken(verify(study_path), 1, "event 1 (study_created)", "epoch 15 as N3")


def test_decision_row_edited(study_path):
    tamper(study_path, "UPDATE decisions SET note = 'no spindles' WHERE id = 2")
    assert_broken(verify(study_path), 3, "event 3 (decision, epoch 1)", "decisions table",
                  "note")


def test_decision_row_deleted(study_path):
    tamper(study_path, "DELETE FROM decisions WHERE id = 3")
    assert_broken(verify(study_path), 4, "event 4 (decision, epoch 2)", "decision 3 is missing")


def test_decision_row_added_without_an_event(study_path):
    tamper(study_path, "INSERT INTO decisions VALUES (8, 5, 'W', '?', 'manual', 'eve', "
                       "'2024-01-01T00:00:00.000000Z', NULL, NULL)")
    assert_broken(verify(study_path), None, "decision 8", "in no audit event")


def test_event_deleted_in_the_middle(study_path):
    tamper(study_path, "DELETE FROM audit_events WHERE seq = 4")
    assert_broken(verify(study_path), 4, "event 4 is missing", "from event 3 to event 5")


def test_deleted_middle_event_with_later_events_renumbered(study_path):
    tamper(study_path, "DELETE FROM audit_events WHERE seq = 4",
           "UPDATE audit_events SET seq = seq - 1 WHERE seq > 4")
    assert_broken(verify(study_path), 4, "event 4 (montage_set)", "chain broken")


def test_last_event_deleted(study_path):
    tamper(study_path, "DELETE FROM audit_events WHERE seq = 9")
    assert_broken(verify(study_path), 9, "event 9 is missing", "truncated")


def test_last_event_deleted_and_head_rewritten_is_still_caught_by_the_tables(study_path):
    eighth = event_row(study_path, 8)
    tamper(study_path, "DELETE FROM audit_events WHERE seq = 9",
           "UPDATE meta SET value = '8' WHERE key = 'audit_head_seq'",
           ("UPDATE meta SET value = ? WHERE key = 'audit_head_hash'", (eighth[6],)))
    # The chain and head now agree, but epoch 3 is N1 in the table and decision 7 has no event.
    assert_broken(verify(study_path), 1, "epochs table shows epoch 3 as N1")


def test_two_events_swapped(study_path):
    tamper(study_path, "UPDATE audit_events SET seq = 100 WHERE seq = 3",
           "UPDATE audit_events SET seq = 3 WHERE seq = 6",
           "UPDATE audit_events SET seq = 6 WHERE seq = 100")
    assert_broken(verify(study_path), 3, "event 3 (decision, epoch 1)")


def _forge(seq, prev_hash, payload, kind="decision"):
    time, actor = "2024-03-02T03:00:00.000000Z", "eve"
    digest = event_hash(seq, time, actor, kind, payload, prev_hash)
    return (seq, time, actor, kind, json.dumps(payload), prev_hash, digest)


def test_forged_event_inserted_in_the_middle_with_a_valid_hash(study_path):
    """The forger knows the recipe, renumbers the later events and chains the forgery in."""
    fourth = event_row(study_path, 4)
    forged = _forge(5, fourth[6], {"decision": 99, "epoch": 9, "stage": "W",
                                   "previous": "?", "source": "manual", "note": None})
    tamper(study_path, "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 5",
           "UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000",
           "UPDATE meta SET value = '10' WHERE key = 'audit_head_seq'",
           ("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?)", forged))
    assert_broken(verify(study_path), 5, "event 5 (decision, epoch 9)", "was inserted")


def test_forged_event_appended_after_the_recorded_head(study_path):
    ninth = event_row(study_path, 9)
    forged = _forge(10, ninth[6], {"decision": 7, "epoch": 9, "stage": "W",
                                   "previous": "?", "source": "manual", "note": None})
    tamper(study_path, ("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?)", forged))
    assert_broken(verify(study_path), 10, "event 10 (decision, epoch 9)",
                  "after the study's recorded last event 9")


def test_forged_event_appended_with_the_head_moved_too(study_path):
    ninth = event_row(study_path, 9)
    forged = _forge(10, ninth[6], {"decision": 7, "epoch": 9, "stage": "W",
                                   "previous": "?", "source": "manual", "note": None})
    tamper(study_path, ("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?)", forged),
           "UPDATE meta SET value = '10' WHERE key = 'audit_head_seq'",
           ("UPDATE meta SET value = ? WHERE key = 'audit_head_hash'", (forged[6],)))
    assert_broken(verify(study_path), 10, "event 10 (decision, epoch 9)",
                  "decision 7 is missing from the decisions table")


def test_forged_event_with_a_made_up_hash(study_path):
    tamper(study_path, "INSERT INTO audit_events VALUES (10, '2024-03-02T03:00:00.000000Z', "
                       "'eve', 'export', '{}', 'abc', 'def')")
    assert_broken(verify(study_path), 10, "event 10 (export)", "chain broken")


def test_payload_that_is_not_json(study_path):
    tamper(study_path, "UPDATE audit_events SET payload = '{not json' WHERE seq = 2")
    assert_broken(verify(study_path), 2, "event 2 (decision)", "not valid JSON")


def test_study_id_changed_breaks_the_first_link(study_path):
    tamper(study_path, "UPDATE meta SET value = 'another study' WHERE key = 'study_id'")
    assert_broken(verify(study_path), 1, "event 1 (study_created)", "start of the trail")


def test_n_epochs_changed_in_meta(study_path):
    tamper(study_path, "UPDATE meta SET value = '25' WHERE key = 'n_epochs'")
    assert_broken(verify(study_path), 1, "event 1 (study_created)", "n_epochs")


def test_montage_table_edited(study_path):
    tamper(study_path, "UPDATE montage SET positive = 'C3' WHERE role = 'C4-M1'")
    assert_broken(verify(study_path), 5, "event 5 (montage_set)", "montage table")


def test_study_keeps_working_and_verifying_after_reopen(study_path):
    study = Study.open(study_path)
    study.score(10, Stage.N2, scorer="amy")
    study.undo(scorer="amy")
    study.undo(scorer="amy")
    assert study.verify().ok
    study.close()
    assert verify(study_path).n_events == 12
