"""The rows a study writes: a new study file, its identity and first event, a decision with its audit
event and the epoch's new stage, the montage table, and the schema's step-by-step upgrade.

Only ``core.study.study.Study`` calls these: ``create_study_file`` builds a new file on its own
connection; the others run inside the study's own transactions, each write with its audit event.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path

from ...errors import StudyError
from ..base.durable import fsync_folder
from ..base.stages import Stage
from ..signals.montage import Montage
from . import audit
from .decision import DECISION_COLUMNS, Decision
from .study_schema import (FORMAT_NAME, MIGRATIONS, SCHEMA_VERSION, connect_new, create_schema,
                           describe_sqlite_error, set_durability, set_meta, sidecars)

__all__ = ["create_study_file", "write_new_study", "record_decision", "read_montage", "write_montage", "migrate"]


def create_study_file(path: Path, *, recording_path, n_epochs: int, montage: Montage, scorer: str,
                      fingerprint: str, start_iso: str | None) -> None:
    """Write a complete new study at ``path``: built in a temporary file beside it, committed,
    then renamed into place (a crash leaves the old file or none, never half a study); a
    StudyError (one line) when it cannot be written."""
    p = Path(path)
    study_id = uuid.uuid4().hex
    tmp = p.with_name(f".{p.name}.{study_id[:8]}.creating")
    try:
        conn = connect_new(tmp)
        try:
            set_durability(conn)
            conn.execute("BEGIN IMMEDIATE")
            create_schema(conn)
            write_new_study(conn, study_id, recording_path, n_epochs, montage, scorer,
                            fingerprint, start_iso)
            conn.execute("COMMIT")
        finally:
            conn.close()  # last connection: checkpoints and removes the -wal file
        for leftover in sidecars(p):  # a stale WAL must never be replayed onto the new file
            leftover.unlink(missing_ok=True)
        os.replace(tmp, p)
        fsync_folder(p.parent)
    except (sqlite3.Error, OSError) as exc:
        for junk in (tmp, *sidecars(tmp)):
            try:
                junk.unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(exc, sqlite3.Error):
            message = describe_sqlite_error(exc, "cannot create the study")
        else:
            message = f"cannot create the study: {exc.strerror or exc}"
        raise StudyError(p, message) from None


def write_new_study(conn, study_id, recording_path, n_epochs, montage, scorer, fingerprint,
                     start_iso) -> None:
    # The identity goes in first: the first event's genesis hash comes from the study id.
    set_meta(conn, "format", FORMAT_NAME)
    set_meta(conn, "schema_version", SCHEMA_VERSION)
    set_meta(conn, "study_id", study_id)
    recording = os.path.abspath(os.fspath(recording_path))
    montage_obj = json.loads(montage.to_json())
    event = audit.append_event(conn, audit.STUDY_CREATED, {
        "study_id": study_id,
        "schema_version": SCHEMA_VERSION,
        "recording_path": recording,
        "recording_fingerprint": fingerprint or "",
        "recording_start": start_iso,
        "n_epochs": n_epochs,
        "montage": montage_obj,
    }, scorer)
    for key, value in (("recording_path", recording), ("recording_fingerprint", fingerprint or ""),
                       ("recording_start", start_iso or ""), ("n_epochs", n_epochs),
                       ("created", event.time), ("created_by", scorer)):
        set_meta(conn, key, value)
    conn.executemany("INSERT INTO epochs(epoch, stage) VALUES (?, ?)",
                     ((e, Stage.UNSCORED.value) for e in range(n_epochs)))
    write_montage(conn, montage_obj)


def record_decision(conn, kind, epoch, stage, source, scorer, note, undoes,
                     suggestion: dict | None = None) -> Decision:
    """Insert one decision, its audit event and the epoch's new stage (caller's transaction)."""
    row = conn.execute("SELECT stage FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
    if row is None:
        raise sqlite3.DatabaseError(f"epoch {epoch} is missing: database disk image is malformed")
    previous = Stage(row[0])
    did = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM decisions").fetchone()[0]
    payload = {"decision": did, "epoch": epoch, "stage": stage.value,
               "previous": previous.value, "source": source, "note": note}
    if undoes is not None:
        payload["undoes"] = undoes
    if suggestion is not None:
        payload["suggestion"] = suggestion
    event = audit.append_event(conn, kind, payload, scorer)
    conn.execute(f"INSERT INTO decisions({DECISION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (did, epoch, stage.value, previous.value, source, scorer, event.time, note,
                  undoes))
    conn.execute("UPDATE epochs SET stage = ? WHERE epoch = ?", (stage.value, epoch))
    return Decision(did, epoch, stage, previous, source, scorer, event.time, note, undoes)


def read_montage(conn: sqlite3.Connection) -> Montage:
    raw = {role: (None if pos is None else [pos, neg])
           for role, pos, neg in conn.execute("SELECT role, positive, negative FROM montage")}
    return Montage.from_json(json.dumps(raw))


def write_montage(conn: sqlite3.Connection, montage_obj: dict) -> None:
    conn.executemany("INSERT INTO montage(role, positive, negative) VALUES (?, ?, ?)",
                     ((role, None if d is None else d[0], None if d is None else d[1])
                      for role, d in montage_obj.items()))


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Upgrade an older study step by step; each step is one audited transaction."""
    while version < SCHEMA_VERSION:
        step = MIGRATIONS[version]
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(conn)
            set_meta(conn, "schema_version", version + 1)
            audit.append_event(conn, audit.SCHEMA_MIGRATED,
                               {"from": version, "to": version + 1}, "sleepvlm-ws")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version += 1
