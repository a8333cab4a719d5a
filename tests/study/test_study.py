"""The study file: decisions persist exactly, undo walks back, bad files give one-line errors,
and a committed decision survives the scoring process being killed."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.signals.montage import Derivation, Montage
from sleepvlm_ws.core.study import study_schema
from sleepvlm_ws.core.study.audit_verify import verify
from sleepvlm_ws.core.study.study import (AI_ACCEPTED, AI_OVERRIDDEN, IMPORTED, MANUAL, UNDO, Study,
                                          default_study_path)
from sleepvlm_ws.errors import StudyError


def psg_montage() -> Montage:
    m = Montage()
    m.roles["F4-M1"] = Derivation("F4", "M1")
    m.roles["C4-M1"] = Derivation("C4-M1")
    m.roles["CHIN"] = Derivation("Chin1", "Chin2")
    return m


def new_study(tmp_path, n_epochs=40, name="night.edf.sleepvlm", **kw) -> Study:
    return Study.create(tmp_path / name, recording_path=tmp_path / "night.edf", n_epochs=n_epochs,
                        montage=psg_montage(), scorer="amy", recording_fingerprint="sha256:abc",
                        start_iso="2024-03-01T22:15:00", **kw)


def test_default_study_path_sits_beside_the_recording(tmp_path):
    assert default_study_path(tmp_path / "night.edf") == tmp_path / "night.edf.sleepvlm"


def test_reopen_restores_stages_decisions_montage_and_viewing_position(tmp_path):
    study = new_study(tmp_path)
    study.score(0, Stage.W, scorer="amy")
    study.score(1, "N1", scorer="amy", note="slow eye movements")
    study.score(2, Stage.N2, scorer="bob", source=AI_ACCEPTED)
    study.score(3, Stage.N3, scorer="bob", source=AI_OVERRIDDEN, note="delta > 20 %")
    study.score(4, Stage.ARTEFACT, scorer="amy", source=IMPORTED)
    study.score(1, Stage.N2, scorer="amy")
    study.set_state("current_epoch", "17")
    changed = psg_montage()
    changed.roles["LOC"] = Derivation("E1", "M2")
    study.set_montage(changed, scorer="amy")
    before_stages, before_decisions = study.stages(), study.decisions()
    study.close()

    reopened = Study.open(tmp_path / "night.edf.sleepvlm")
    assert reopened.stages() == before_stages
    assert reopened.stages()[:6] == [Stage.W, Stage.N2, Stage.N2, Stage.N3, Stage.ARTEFACT,
                                     Stage.UNSCORED]
    assert reopened.decisions() == before_decisions
    assert [(d.source, d.scorer, d.note) for d in reopened.decisions()] == [
        (MANUAL, "amy", None), (MANUAL, "amy", "slow eye movements"), (AI_ACCEPTED, "bob", None),
        (AI_OVERRIDDEN, "bob", "delta > 20 %"), (IMPORTED, "amy", None), (MANUAL, "amy", None)]
    assert reopened.decisions()[5].previous is Stage.N1
    assert reopened.get_state("current_epoch") == "17"
    assert reopened.get_state("never set", "fallback") == "fallback"
    assert reopened.montage.roles["LOC"] == Derivation("E1", "M2")
    assert reopened.montage.roles["F4-M1"] == Derivation("F4", "M1")
    assert reopened.montage.missing == ["O2-M1", "ROC"]
    assert reopened.progress() == (5, 40)
    assert reopened.n_epochs == 40
    assert reopened.recording_path == tmp_path / "night.edf"
    meta = reopened.meta
    assert meta["recording_fingerprint"] == "sha256:abc"
    assert meta["start"] == "2024-03-01T22:15:00"
    assert meta["n_epochs"] == 40 and meta["created"].endswith("Z")
    assert reopened.verify().ok
    reopened.close()


def test_a_decision_is_committed_when_score_returns(tmp_path):
    study = new_study(tmp_path)
    decision = study.score(7, Stage.R, scorer="amy", note="sawtooth waves")
    # A second, independent connection (another process would see the same) finds it at once.
    other = sqlite3.connect(study.path)
    row = other.execute("SELECT epoch, stage, note FROM decisions WHERE id = ?",
                        (decision.id,)).fetchone()
    stage = other.execute("SELECT stage FROM epochs WHERE epoch = 7").fetchone()
    kinds = [k for (k,) in other.execute("SELECT kind FROM audit_events ORDER BY seq")]
    other.close()
    assert row == (7, "R", "sawtooth waves") and stage == ("R",)
    assert kinds == ["study_created", "decision"]
    assert study._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert study._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    study.close()


def test_undo_walks_back_through_decisions_and_is_itself_recorded(tmp_path):
    study = new_study(tmp_path)
    first = study.score(0, Stage.W, scorer="amy")
    second = study.score(0, Stage.N2, scorer="amy")
    third = study.score(1, Stage.R, scorer="amy")

    u1 = study.undo(scorer="bob")
    assert (u1.epoch, u1.stage, u1.previous, u1.source, u1.undoes, u1.scorer) == (
        1, Stage.UNSCORED, Stage.R, UNDO, third.id, "bob")
    assert study.stage(1) is Stage.UNSCORED
    u2 = study.undo(scorer="bob")
    assert (u2.epoch, u2.stage, u2.undoes) == (0, Stage.W, second.id)
    study.close()

    study = Study.open(tmp_path / "night.edf.sleepvlm")  # the walk continues after reopening
    u3 = study.undo(scorer="bob")
    assert (u3.epoch, u3.stage, u3.previous, u3.undoes) == (0, Stage.UNSCORED, Stage.W, first.id)
    assert study.undo(scorer="bob") is None
    assert study.stages() == [Stage.UNSCORED] * 40

    # A new decision after undoing is the next to be undone; undos are never themselves undone.
    fourth = study.score(5, Stage.N3, scorer="amy")
    assert study.undo(scorer="amy").undoes == fourth.id
    assert study.undo(scorer="amy") is None
    assert [d.source for d in study.decisions()] == [MANUAL] * 3 + [UNDO] * 3 + [MANUAL, UNDO]
    assert [e.kind for e in study.audit_events()].count("undo") == 4
    assert study.verify().ok
    study.close()


def test_rejects_bad_arguments_without_recording_anything(tmp_path):
    study = new_study(tmp_path, n_epochs=5)
    with pytest.raises(IndexError):
        study.score(5, Stage.W, scorer="amy")
    with pytest.raises(ValueError):
        study.score(0, "stage 7", scorer="amy")
    with pytest.raises(ValueError):
        study.score(0, Stage.W, scorer="amy", source="guess")
    with pytest.raises(ValueError):
        study.score(0, Stage.W, scorer="amy", source=UNDO)
    with pytest.raises(ValueError):
        study.score(0, Stage.W, scorer="  ")
    with pytest.raises(ValueError):
        study.record_event("decision", {"epoch": 1}, "amy")
    with pytest.raises(TypeError):
        study.set_state("current_epoch", 3)
    assert study.decisions() == [] and len(study.audit_events()) == 1
    study.close()


def test_batch_saves_all_or_nothing(tmp_path):
    study = new_study(tmp_path, n_epochs=10)
    with pytest.raises(RuntimeError):
        with study.batch():
            study.record_event("import", {"file": "night.csv", "counts": {"W": 2}}, "amy")
            study.score(0, Stage.W, scorer="amy", source=IMPORTED)
            study.score(1, Stage.W, scorer="amy", source=IMPORTED)
            raise RuntimeError("the import failed half way")
    assert study.stages() == [Stage.UNSCORED] * 10  # memory agrees with the file again
    assert study.decisions() == [] and len(study.audit_events()) == 1

    made = study.score_many([(e, Stage.N2) for e in range(4)], scorer="amy")
    assert [d.id for d in made] == [1, 2, 3, 4] and all(d.source == IMPORTED for d in made)
    study.close()
    assert Study.open(tmp_path / "night.edf.sleepvlm").progress() == (4, 10)


def test_record_event_logs_other_modules_actions(tmp_path):
    study = new_study(tmp_path)
    event = study.record_event("export", {"format": "csv", "file": "out.csv"}, "amy")
    assert (event.seq, event.kind, event.actor) == (2, "export", "amy")
    assert study.audit_events()[-1] == event
    study.close()


def test_create_refuses_to_overwrite_unless_asked(tmp_path):
    study = new_study(tmp_path)
    study.score(0, Stage.W, scorer="amy")
    old_id = study.meta["study_id"]
    study.close()
    with pytest.raises(StudyError, match="already exists"):
        new_study(tmp_path)
    assert Study.open(tmp_path / "night.edf.sleepvlm").decisions()  # untouched
    fresh = new_study(tmp_path, overwrite=True)
    assert fresh.decisions() == [] and fresh.meta["study_id"] != old_id
    assert fresh.verify().ok
    fresh.close()
    leftovers = [p.name for p in tmp_path.iterdir() if "creating" in p.name]
    assert leftovers == []


def test_create_in_a_missing_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(StudyError) as info:
        new_study(tmp_path / "no such folder")
    assert "no such folder" in str(info.value) and "\n" not in str(info.value)


def _sqlite_but_not_a_study(p):
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.commit()
    conn.close()


def _study_from_the_future(p):
    study = Study.create(p, recording_path="x.edf", n_epochs=3, montage=Montage(), scorer="amy")
    study.close()
    conn = sqlite3.connect(p)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("make, expected", [
    (lambda p: None, "no such study file"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(random.Random(7).randbytes(5000)), "not an SQLite database"),
    (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 2000), "not an SQLite database"),
    (_sqlite_but_not_a_study, "not a SleepVLM study"),
    (_study_from_the_future, "newer SleepVLM Workstation"),
])
def test_opening_a_bad_file_is_a_one_line_study_error(tmp_path, make, expected):
    path = tmp_path / "bad.sleepvlm"
    make(path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(StudyError) as info:
        Study.open(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message
    if before is not None:
        assert path.read_bytes() == before  # a wrong file is never written to
    with pytest.raises(StudyError):
        verify(path)


def test_a_study_missing_epochs_is_refused_as_damaged(tmp_path):
    new_study(tmp_path, n_epochs=5).close()
    path = tmp_path / "night.edf.sleepvlm"
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM epochs WHERE epoch = 3")
    conn.commit()
    conn.close()
    with pytest.raises(StudyError, match="damaged") as info:
        Study.open(path)
    assert str(path) in str(info.value)
    assert verify(path).first_bad_seq == 1  # never scored: study_created set it


def test_a_locked_study_gives_a_study_error_on_save_and_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(study_schema, "BUSY_TIMEOUT_S", 0.1)
    study = new_study(tmp_path)
    study.score(0, Stage.W, scorer="amy")
    other = sqlite3.connect(study.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    with pytest.raises(StudyError, match="locked") as info:
        study.score(1, Stage.N1, scorer="amy")
    assert str(study.path) in str(info.value)
    with pytest.raises(StudyError, match="locked"):
        study.undo(scorer="amy")
    other.execute("ROLLBACK")
    other.close()
    assert study.stage(0) is Stage.W and study.stage(1) is Stage.UNSCORED
    study.score(1, Stage.N1, scorer="amy")
    assert [d.id for d in study.decisions()] == [1, 2] and study.verify().ok
    study.close()


def _make_unwritable(path):
    """Protect a file or folder from us (chmod; as root, chattr +i). Return an undo, or None
    where this machine cannot do it (then the test is skipped)."""
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if is_root:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            return None
        undo = lambda: subprocess.run(["chattr", "-i", str(path)], capture_output=True)  # noqa
    else:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        undo = lambda: path.chmod(mode)  # noqa: E731
    probe = path / "probe" if path.is_dir() else path
    try:
        with open(probe, "ab"):
            pass
    except OSError:
        return undo
    undo()
    return None


def test_a_read_only_study_opens_for_review_but_saving_is_a_study_error(tmp_path):
    study = new_study(tmp_path)
    study.score(0, Stage.W, scorer="amy")
    study.close()
    path = tmp_path / "night.edf.sleepvlm"
    undo = _make_unwritable(path)
    if undo is None:
        pytest.skip("cannot make a file read-only here")
    try:
        study = Study.open(path)
        assert study.stage(0) is Stage.W
        with pytest.raises(StudyError, match="read-only") as info:
            study.score(1, Stage.N1, scorer="amy")
        assert str(path) in str(info.value) and study.stage(1) is Stage.UNSCORED
        study.close()
        assert verify(path).ok
    finally:
        undo()


def test_creating_a_study_in_a_read_only_folder_is_a_study_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    undo = _make_unwritable(folder)
    if undo is None:
        pytest.skip("cannot make a folder read-only here")
    try:
        with pytest.raises(StudyError, match="cannot create the study") as info:
            Study.create(folder / "night.edf.sleepvlm", recording_path="night.edf", n_epochs=3,
                         montage=Montage(), scorer="amy")
        assert str(folder) in str(info.value)
    finally:
        undo()
    assert list(folder.iterdir()) == []


def test_recording_found_beside_the_study_after_the_folder_moved(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "night.edf").write_bytes(b"x")
    Study.create(tmp_path / "a" / "night.edf.sleepvlm", recording_path=tmp_path / "a" / "night.edf",
                 n_epochs=2, montage=Montage(), scorer="amy").close()
    os.rename(tmp_path / "a", tmp_path / "b")
    moved = Study.open(tmp_path / "b" / "night.edf.sleepvlm")
    assert moved.recording_path == tmp_path / "b" / "night.edf"
    moved.close()


def test_operations_on_a_closed_study_are_study_errors(tmp_path):
    study = new_study(tmp_path)
    study.close()
    study.close()  # closing twice is harmless
    with pytest.raises(StudyError, match="closed"):
        study.score(0, Stage.W, scorer="amy")


# ------------------------------------------------------------------------------ kill test
_CHILD = textwrap.dedent("""
    import random, sys
    from sleepvlm_ws.core.base.stages import SLEEP_STAGES
    from sleepvlm_ws.core.study.study import Study
    study = Study.open(sys.argv[1])
    rnd = random.Random(int(sys.argv[2]))
    print("ready", flush=True)
    while True:
        if rnd.random() < 0.15:
            decision = study.undo(scorer="night shift")
        else:
            decision = study.score(rnd.randrange(study.n_epochs), rnd.choice(SLEEP_STAGES),
                                   scorer="night shift", note=rnd.choice([None, "checked"]))
        if decision is not None:
            print(decision.id, flush=True)
""")


def test_committed_decisions_survive_the_scorer_being_killed(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    new_study(tmp_path, n_epochs=60).close()
    path = tmp_path / "night.edf.sleepvlm"
    rnd = random.Random()
    reported_total = 0
    for round_no in range(5):
        child = subprocess.Popen([sys.executable, str(script), str(path), str(round_no)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = child.stdout.readline()
            assert first == "ready\n", child.stderr.read()
            delay = rnd.uniform(0.02, 0.4)
            time.sleep(delay)
            child.kill()  # SIGKILL on POSIX: no cleanup, no close
            rest = child.stdout.read()
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
            child.stderr.close()
        reported = {int(line) for line in rest.splitlines(keepends=True)
                    if line.endswith("\n") and line.strip().isdigit()}
        reported_total += len(reported)
        study = Study.open(path)
        stored = {d.id for d in study.decisions()}
        assert reported <= stored, f"round {round_no} (killed after {delay:.3f} s) lost " \
                                   f"{sorted(reported - stored)[:5]}"
        result = study.verify()
        assert result.ok, result.reason
        study.close()
        assert verify(path).ok
    assert reported_total > 0
