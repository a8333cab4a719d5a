"""Drill: a study tampered with behind the workstation's back.

A study is made through the CLI (``import`` twice, ``export``), copied, and each copy is edited
the way an attacker would: a separate sqlite3 connection that first drops the append-only
triggers. ``sleepvlm-ws audit verify`` must exit 1 with one stderr line naming the first bad
event (or, for an edit of the tables alone, the epoch whose stage disagrees with the trail).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from drill_common import Context, DrillResult, clean_refusal, cli, synth_recording

COLUMNS = "time, actor, kind, payload, prev_hash, hash"


def _sql(path: Path, *statements) -> None:
    conn = sqlite3.connect(path)
    try:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
        for name in names:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        for st in statements:
            sql, params = (st, ()) if isinstance(st, str) else st
            conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def _swap(m: int) -> list:
    """Swap the contents of events m and m+1 (their seq stays): a reordered trail."""
    return ["CREATE TEMP TABLE a AS SELECT * FROM audit_events WHERE seq = %d" % m,
            "CREATE TEMP TABLE b AS SELECT * FROM audit_events WHERE seq = %d" % (m + 1),
            f"UPDATE audit_events SET ({COLUMNS}) = (SELECT {COLUMNS} FROM b) WHERE seq = {m}",
            f"UPDATE audit_events SET ({COLUMNS}) = (SELECT {COLUMNS} FROM a) WHERE seq = {m + 1}"]


def make_study(ctx: Context, folder: Path) -> tuple[Path, Path]:
    """A recording and its study, made through the CLI: two imports and an export."""
    from sleepvlm_ws.core.base.hypnogram import Hypnogram
    from sleepvlm_ws.core.study.formats import export_hypnogram

    rec = synth_recording(folder / "night.edf", 12, fs=100.0)
    for name, stages in (("a.tsv", ["W", "N1", "N2", "N2", "N3", "N3", "N2", "R", "R", "W", "N1", "N2"]),
                         ("b.tsv", ["W", "W", "N2", "N3", "N3", "N2", "N2", "R", "N2", "W", "N1", "N2"])):
        export_hypnogram(Hypnogram(stages=stages), "tsv", folder / name)
        run = cli(ctx, "import", rec, folder / name)
        if run.rc != 0:
            raise RuntimeError(f"setting up the tamper drill failed: {run.short()}")
    study = folder / "night.edf.sleepvlm"
    cli(ctx, "export", study, "--format", "csv", "--out", folder / "out.csv")
    return rec, study


def run(ctx: Context) -> DrillResult:
    result = DrillResult("Tampered study (`audit verify`)")
    folder = ctx.folder("tamper")
    _rec, study = make_study(ctx, folder)
    conn = sqlite3.connect(study)
    rows = conn.execute("SELECT seq, kind FROM audit_events ORDER BY seq").fetchall()
    conn.close()
    last = rows[-1][0]
    m = next(seq for seq, kind in rows if kind == "decision" and seq > 3)  # a decision mid-trail
    clean = cli(ctx, "audit", "verify", study)
    result.add("untouched copy (control)", clean.rc == 0, clean.short())
    cases = {
        "edit a decision's stage in the trail": (
            [f"UPDATE audit_events SET payload = json_set(payload, '$.stage', CASE "
             f"json_extract(payload, '$.stage') WHEN 'R' THEN 'W' ELSE 'R' END) WHERE seq = {m}"], m),
        "edit an event's actor": ([(f"UPDATE audit_events SET actor = ? WHERE seq = {m}", ("eve",))], m),
        "delete an event mid-trail": ([f"DELETE FROM audit_events WHERE seq = {m}"], m),
        "delete an event and renumber the rest": (
            [f"DELETE FROM audit_events WHERE seq = {m}",
             f"UPDATE audit_events SET seq = seq - 1 WHERE seq > {m}"], m),
        "reorder two events": (_swap(m), m),
        "delete the last event (truncation)": ([f"DELETE FROM audit_events WHERE seq = {last}"], last),
        "edit a stage in the epochs table only": (["UPDATE epochs SET stage = 'R' WHERE epoch = 4"],
                                                  "epoch 4"),
        "edit a decision row only": (["UPDATE decisions SET stage = 'N3' WHERE id = 2"], None),
    }
    if ctx.quick:
        cases = {k: v for k, v in cases.items() if k in ("edit an event's actor", "reorder two events")}
    for name, (statements, first_bad) in cases.items():
        copy = folder / f"{len(result.cases):02d}.sleepvlm"
        shutil.copy(study, copy)
        _sql(copy, *statements)
        run_ = cli(ctx, "audit", "verify", copy)
        words = () if first_bad is None else (
            (first_bad,) if isinstance(first_bad, str) else (f"event {first_bad}",))
        ok, detail = clean_refusal(run_, copy.name, code=1, words=words)
        result.add(name, ok, detail)
    result.notes.append("tamper: a consistent rewrite of the whole file (recomputed hashes and head) "
                        "is out of scope, as docs/ARCHITECTURE.md says; not drilled")
    return result
