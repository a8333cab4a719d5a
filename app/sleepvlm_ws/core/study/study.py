"""Study: one SQLite file per study holding the montage, every epoch's current stage,
every decision and the hash-chained audit trail.

Durability: the file is in WAL mode with ``synchronous=FULL``, and every decision is committed
in its own transaction (together with its audit event) before ``score`` returns, so a decision
the technologist saw accepted survives a crash or a power cut. ``batch()`` groups several
changes (a hypnogram import) into one all-or-nothing transaction. The schema and the way a
file is recognised live in ``study_schema``; the audit trail in ``audit``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from ...errors import StudyError
from ..base.durable import fsync_folder
from ..base.stages import Stage, parse_stage
from ..signals.montage import Montage
from . import audit
from .audit import AuditEvent
from .audit_verify import VerifyResult, verify_connection
from .decision import (AI_ACCEPTED, AI_OVERRIDDEN, DECISION_COLUMNS,  # the study API names its decisions
                       IMPORTED, MANUAL, SOURCES, UNDO, Decision, decision_from_row)
from .study_schema import (FORMAT_NAME, MIGRATIONS, SCHEMA_VERSION, connect_new, create_schema,
                           describe_sqlite_error, locate_recording, open_study_connection, read_meta,
                           set_durability, set_meta, sidecars)

STUDY_SUFFIX = ".sleepvlm"

def default_study_path(recording_path: str | Path) -> Path:
    """Study file next to the recording: ``night.edf`` -> ``night.edf.sleepvlm``."""
    p = Path(recording_path)
    return p.with_name(p.name + STUDY_SUFFIX)


class Study:
    """An open study file. Create with ``Study.create``, open with ``Study.open``."""

    path: Path
    recording_path: Path
    n_epochs: int

    def __init__(self, path: Path, conn: sqlite3.Connection):
        # Use Study.create / Study.open.
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._batch_depth = 0
        self._load()

    # -- creating and opening ----------------------------------------------------------
    @classmethod
    def create(cls, path, *, recording_path, n_epochs: int, montage: Montage, scorer: str,
               recording_fingerprint: str = "", start_iso: str | None = None,
               overwrite: bool = False) -> "Study":
        """Write a new study file (atomically: it appears complete or not at all) and open it.

        Refuses to replace an existing file unless ``overwrite``.
        """
        p = Path(path)
        if not _is_int(n_epochs) or n_epochs < 0:
            raise ValueError(f"n_epochs must be a whole number >= 0, not {n_epochs!r}")
        if not isinstance(montage, Montage):
            raise TypeError("montage must be a Montage")
        _check_scorer(scorer)
        if p.is_dir():
            raise StudyError(p, "is a folder, not a study file")
        if (p.exists() or p.is_symlink()) and not overwrite:
            raise StudyError(p, "a study file already exists here (not overwritten)")
        if not p.parent.is_dir():
            raise StudyError(p, "cannot create the study: its folder does not exist")
        study_id = uuid.uuid4().hex
        tmp = p.with_name(f".{p.name}.{study_id[:8]}.creating")
        try:
            conn = connect_new(tmp)
            try:
                set_durability(conn)
                conn.execute("BEGIN IMMEDIATE")
                create_schema(conn)
                _write_new_study(conn, study_id, recording_path, n_epochs, montage, scorer,
                                 recording_fingerprint, start_iso)
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
        return cls.open(p)

    @classmethod
    def open(cls, path) -> "Study":
        """Open an existing study. StudyError (one line naming the file) if it is not one."""
        p = Path(path)
        conn, version = open_study_connection(p)
        try:
            set_durability(conn)
            if version < SCHEMA_VERSION:
                _migrate(conn, version)
            return cls(p, conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StudyError(p, describe_sqlite_error(exc, "cannot open the study")) from None
        except BaseException:
            conn.close()
            raise

    def _load(self) -> None:
        conn = self._live()
        meta = read_meta(conn)
        try:
            self.n_epochs = int(meta["n_epochs"])
            self.recording_path = locate_recording(self.path, meta["recording_path"])
            stages = dict(conn.execute("SELECT epoch, stage FROM epochs"))
            self._stages = [Stage(stages[e]) for e in range(self.n_epochs)]
        except (KeyError, ValueError):
            raise StudyError(self.path, "study file is damaged (its epochs or details are "
                                        "incomplete); run 'sleepvlm-ws audit verify'") from None
        self._meta = {
            "study_id": meta.get("study_id", ""),
            "schema_version": int(meta.get("schema_version", SCHEMA_VERSION)),
            "recording_path": meta["recording_path"],
            "recording_fingerprint": meta.get("recording_fingerprint", ""),
            "start": meta.get("recording_start") or None,
            "n_epochs": self.n_epochs,
            "created": meta.get("created", ""),
        }
        self._montage = _read_montage(conn)

    # -- reading -----------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        """recording_path, recording_fingerprint, start (recording start, ISO or None),
        n_epochs, created (ISO UTC), study_id, schema_version."""
        return dict(self._meta)

    @property
    def montage(self) -> Montage:
        return Montage.from_json(self._montage.to_json())

    def stages(self) -> list[Stage]:
        return list(self._stages)

    hypnogram = stages

    def stage(self, epoch: int) -> Stage:
        return self._stages[self._check_epoch(epoch)]

    def progress(self) -> tuple[int, int]:
        """(epochs scored, all epochs); an artefact epoch counts as scored."""
        return sum(1 for s in self._stages if s.is_scored), self.n_epochs

    def decisions(self) -> list[Decision]:
        rows = self._read(f"SELECT {DECISION_COLUMNS} FROM decisions ORDER BY id")
        return [decision_from_row(r) for r in rows]

    def audit_events(self) -> list[AuditEvent]:
        conn = self._live()
        try:
            return audit.read_events(conn)
        except (sqlite3.Error, ValueError) as exc:
            raise StudyError(self.path, f"cannot read the audit trail: {exc}") from None

    def verify(self) -> VerifyResult:
        """``audit_verify.verify`` on this open study."""
        if self._batch_depth:
            raise RuntimeError("verify() inside batch()")
        return verify_connection(self._live(), self.path)

    def get_state(self, key: str, default: str | None = None) -> str | None:
        rows = self._read("SELECT value FROM ui_state WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    # -- changing ----------------------------------------------------------------------
    def set_montage(self, montage: Montage, *, scorer: str) -> None:
        if not isinstance(montage, Montage):
            raise TypeError("montage must be a Montage")
        _check_scorer(scorer)
        new = json.loads(montage.to_json())
        with self._writing("the montage") as conn:
            old = json.loads(_read_montage(conn).to_json())
            if old == new:
                return
            conn.execute("DELETE FROM montage")
            _write_montage(conn, new)
            audit.append_event(conn, audit.MONTAGE_SET, {"montage": new, "previous": old}, scorer)
        self._montage = Montage.from_json(json.dumps(new))

    def score(self, epoch: int, stage: Stage, *, scorer: str, source: str = MANUAL,
              note: str | None = None, suggestion: dict | None = None) -> Decision:
        """Record one decision; it is committed (with its audit event) when this returns.

        ``suggestion``: for an accepted or overridden AI suggestion, what the audit event says
        about it (plain JSON: model id, pass, suggested stage; see ``core.study.suggestions``)."""
        self._check_epoch(epoch)
        stage = parse_stage(stage)
        if source not in SOURCES or source == UNDO:
            raise ValueError(f"not a decision source: {source!r} (use undo() to undo)")
        _check_scorer(scorer)
        if note is not None and not isinstance(note, str):
            raise TypeError("note must be text or None")
        if suggestion is not None:
            if not isinstance(suggestion, dict):
                raise TypeError("suggestion must be a dict or None")
            audit.canonical_json(suggestion)  # plain JSON or ValueError/TypeError
        with self._writing("the decision") as conn:
            decision = _record_decision(conn, audit.DECISION, epoch, stage, source, scorer, note,
                                        None, suggestion)
        self._stages[epoch] = decision.stage
        return decision

    def score_many(self, assignments: Iterable[tuple[int, Stage]], *, scorer: str,
                   source: str = IMPORTED, note: str | None = None) -> list[Decision]:
        """Several decisions in one all-or-nothing transaction (e.g. an imported hypnogram)."""
        with self.batch():
            return [self.score(e, s, scorer=scorer, source=source, note=note)
                    for e, s in assignments]

    def undo(self, *, scorer: str) -> Decision | None:
        """Revert the latest decision not yet undone (itself not an undo); None if none left."""
        _check_scorer(scorer)
        with self._writing("the undo") as conn:
            row = conn.execute(
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE source != ? AND id NOT IN "
                f"(SELECT undoes FROM decisions WHERE undoes IS NOT NULL) "
                f"ORDER BY id DESC LIMIT 1", (UNDO,)).fetchone()
            if row is None:
                return None
            target = decision_from_row(row)
            decision = _record_decision(conn, audit.UNDO, target.epoch, target.previous, UNDO,
                                        scorer, None, target.id)
        self._stages[decision.epoch] = decision.stage
        return decision

    def record_event(self, kind: str, payload: dict, actor: str) -> AuditEvent:
        """Log an event that changes no table here (import, export, ...) in the audit trail."""
        if not isinstance(kind, str) or not kind or kind in audit.STATE_KINDS:
            raise ValueError(f"record_event cannot log {kind!r} events")
        if not isinstance(payload, dict):
            raise TypeError("payload must be a dict")
        try:
            audit.canonical_json(payload)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"payload is not plain JSON: {exc}") from None
        _check_scorer(actor)
        with self._writing(f"the {kind} record") as conn:
            return audit.append_event(conn, kind, payload, actor)

    def set_state(self, key: str, value: str) -> None:
        """Remember a viewer setting (not audited), e.g. the current epoch."""
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("ui state keys and values are text")
        with self._writing("the viewing position") as conn:
            conn.execute("INSERT OR REPLACE INTO ui_state(key, value) VALUES (?, ?)", (key, value))

    @contextmanager
    def batch(self) -> Iterator["Study"]:
        """Group changes into one transaction: all are saved together, or none on error."""
        with self._writing("the changes"):
            self._batch_depth += 1
            try:
                yield self
            finally:
                self._batch_depth -= 1

    # -- companion tables (core.study.suggestions) ----------------------------------------------
    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of a read-only query (StudyError on a damaged or locked file)."""
        return self._read(sql, args)

    @contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (or part of the enclosing ``batch``) for a core module that
        owns a companion table, e.g. the AI suggestions. Never write the audited tables
        (epochs, decisions, montage, audit_events, meta) through it."""
        with self._writing(what) as conn:
            yield conn

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> "Study":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Study({str(self.path)!r}, n_epochs={self.n_epochs})"

    # -- internals ---------------------------------------------------------------------
    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StudyError(self.path, "the study is closed")
        return self._conn

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._live().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            message = describe_sqlite_error(exc, "cannot read the study")
            raise StudyError(self.path, message) from None

    def _check_epoch(self, epoch: int) -> int:
        if not _is_int(epoch):
            raise TypeError(f"epoch must be a whole number, not {epoch!r}")
        if not 0 <= epoch < self.n_epochs:
            raise IndexError(f"epoch {epoch} is outside 0..{self.n_epochs - 1}")
        return epoch

    @contextmanager
    def _writing(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (or a part of the enclosing batch)."""
        conn = self._live()
        if self._batch_depth:
            yield conn
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StudyError(self.path, describe_sqlite_error(exc, f"cannot save {what}")) from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self._reload_after_rollback()
            if isinstance(exc, sqlite3.Error):
                raise StudyError(self.path,
                                 describe_sqlite_error(exc, f"cannot save {what}")) from None
            raise

    def _reload_after_rollback(self) -> None:
        try:
            self._load()
        except (sqlite3.Error, StudyError):
            pass


# ------------------------------------------------------------------------------ helpers
def _write_new_study(conn, study_id, recording_path, n_epochs, montage, scorer, fingerprint,
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
    _write_montage(conn, montage_obj)


def _record_decision(conn, kind, epoch, stage, source, scorer, note, undoes,
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


def _read_montage(conn: sqlite3.Connection) -> Montage:
    raw = {role: (None if pos is None else [pos, neg])
           for role, pos, neg in conn.execute("SELECT role, positive, negative FROM montage")}
    return Montage.from_json(json.dumps(raw))


def _write_montage(conn: sqlite3.Connection, montage_obj: dict) -> None:
    conn.executemany("INSERT INTO montage(role, positive, negative) VALUES (?, ?, ?)",
                     ((role, None if d is None else d[0], None if d is None else d[1])
                      for role, d in montage_obj.items()))


def _migrate(conn: sqlite3.Connection, version: int) -> None:
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


def _check_scorer(scorer: object) -> None:
    if not isinstance(scorer, str) or not scorer.strip():
        raise ValueError("a scorer (who made the change) is required")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
