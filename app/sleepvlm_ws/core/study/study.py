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
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from ...errors import StudyError
from ..base.stages import Stage, parse_stage
from ..signals.montage import Montage
from . import audit
from .audit import AuditEvent
from .audit_verify import VerifyResult, verify_connection
from .decision import (AI_ACCEPTED, AI_OVERRIDDEN, DECISION_COLUMNS,  # the study API names its decisions
                       IMPORTED, MANUAL, SOURCES, UNDO, Decision, decision_from_row)
from .study_rows import create_study_file, migrate, read_montage, record_decision, write_montage
from .study_schema import (SCHEMA_VERSION, describe_sqlite_error, locate_recording, open_study_connection,
                           read_meta, set_durability)

STUDY_SUFFIX = ".sleepvlm"

def default_study_path(recording_path: str | Path) -> Path:
    """Study file next to the recording: ``night.edf`` -> ``night.edf.sleepvlm``.

    Parameters
    ----------
    recording_path : str or Path
        The recording.

    Returns
    -------
    Path
    """
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

        Parameters
        ----------
        path : str or Path
            The study file to write.
        recording_path : str or Path
            The recording it scores (kept absolute).
        n_epochs : int
            The recording's 30-s epochs, all unscored to begin with.
        montage : Montage
            The derivations in each role.
        scorer : str
            Who created it (the first audit event's actor).
        recording_fingerprint : str
            The recording's fingerprint: a later open refuses another recording.
        start_iso : str or None
            The recording's start (ISO 8601), for clock times.
        overwrite : bool
            Replace an existing file (else StudyError).

        Returns
        -------
        Study
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
        create_study_file(p, recording_path=recording_path, n_epochs=n_epochs, montage=montage,
                          scorer=scorer, fingerprint=recording_fingerprint, start_iso=start_iso)
        return cls.open(p)

    @classmethod
    def open(cls, path) -> "Study":
        """Open an existing study (an older schema is upgraded, audited); StudyError if it is not one.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        Study
        """
        p = Path(path)
        conn, version = open_study_connection(p)
        try:
            set_durability(conn)
            if version < SCHEMA_VERSION:
                migrate(conn, version)
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
        self._montage = read_montage(conn)

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
        """The current stage of ``epoch`` (IndexError outside ``0 .. n_epochs - 1``).

        Parameters
        ----------
        epoch : int

        Returns
        -------
        Stage
        """
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
        """A viewer setting saved by :meth:`set_state`, else ``default``.

        Parameters
        ----------
        key : str
        default : str or None

        Returns
        -------
        str or None
        """
        rows = self._read("SELECT value FROM ui_state WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    # -- changing ----------------------------------------------------------------------
    def set_montage(self, montage: Montage, *, scorer: str) -> None:
        """Save the montage, audited with the previous one (nothing is written when unchanged).

        Parameters
        ----------
        montage : Montage
        scorer : str
        """
        if not isinstance(montage, Montage):
            raise TypeError("montage must be a Montage")
        _check_scorer(scorer)
        new = json.loads(montage.to_json())
        with self._writing("the montage") as conn:
            old = json.loads(read_montage(conn).to_json())
            if old == new:
                return
            conn.execute("DELETE FROM montage")
            write_montage(conn, new)
            audit.append_event(conn, audit.MONTAGE_SET, {"montage": new, "previous": old}, scorer)
        self._montage = Montage.from_json(json.dumps(new))

    def score(self, epoch: int, stage: Stage, *, scorer: str, source: str = MANUAL,
              note: str | None = None, suggestion: dict | None = None) -> Decision:
        """Record one decision; it is committed (with its audit event) when this returns.

        Parameters
        ----------
        epoch : int
        stage : Stage or str
        scorer, source : str
        note : str or None
        suggestion : dict or None
            For an accepted or overridden AI suggestion, what the audit event says about it
            (plain JSON: model id, pass, suggested stage; see ``core.study.suggestions``).

        Returns
        -------
        Decision
        """
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
            decision = record_decision(conn, audit.DECISION, epoch, stage, source, scorer, note,
                                        None, suggestion)
        self._stages[epoch] = decision.stage
        return decision

    def score_many(self, assignments: Iterable[tuple[int, Stage]], *, scorer: str,
                   source: str = IMPORTED, note: str | None = None) -> list[Decision]:
        """Several decisions in one all-or-nothing transaction (e.g. an imported hypnogram).

        Parameters
        ----------
        assignments : iterable of (int, Stage)
        scorer, source : str
        note : str or None

        Returns
        -------
        list of Decision
        """
        with self.batch():
            return [self.score(e, s, scorer=scorer, source=source, note=note)
                    for e, s in assignments]

    def undo(self, *, scorer: str) -> Decision | None:
        """Revert the latest decision not yet undone (itself not an undo); None if none left.

        Parameters
        ----------
        scorer : str

        Returns
        -------
        Decision or None
            The undo: the epoch back at the reverted decision's previous stage.
        """
        _check_scorer(scorer)
        with self._writing("the undo") as conn:
            row = conn.execute(
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE source != ? AND id NOT IN "
                f"(SELECT undoes FROM decisions WHERE undoes IS NOT NULL) "
                f"ORDER BY id DESC LIMIT 1", (UNDO,)).fetchone()
            if row is None:
                return None
            target = decision_from_row(row)
            decision = record_decision(conn, audit.UNDO, target.epoch, target.previous, UNDO,
                                        scorer, None, target.id)
        self._stages[decision.epoch] = decision.stage
        return decision

    def record_event(self, kind: str, payload: dict, actor: str) -> AuditEvent:
        """Log an event that changes no table here (import, export, ...) in the audit trail.

        Parameters
        ----------
        kind, actor : str
        payload : dict

        Returns
        -------
        AuditEvent
        """
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
        """Remember a viewer setting (not audited), e.g. the current epoch.

        Parameters
        ----------
        key, value : str
        """
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
        """Rows of a read-only query (StudyError on a damaged or locked file).

        Parameters
        ----------
        sql : str
        args : tuple

        Returns
        -------
        list of tuple
        """
        return self._read(sql, args)

    @contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (or part of the enclosing ``batch``) for a companion table.

        For a core module that owns one, e.g. the AI suggestions. Never write the audited tables
        (epochs, decisions, montage, audit_events, meta) through it.

        Parameters
        ----------
        what : str
            Names the change in an error (``cannot save <what>``).

        Returns
        -------
        contextmanager
            Yields the study's sqlite3 connection; commits on a clean exit, rolls back on error.
        """
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
def _check_scorer(scorer: object) -> None:
    if not isinstance(scorer, str) or not scorer.strip():
        raise ValueError("a scorer (who made the change) is required")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
