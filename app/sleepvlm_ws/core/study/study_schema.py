"""The study file on disk: its SQLite schema, how it is opened safely, and schema migrations.

One SQLite file per study. It is marked as ours twice: ``PRAGMA application_id`` in the file
header and a ``meta`` row ``format``. The schema version lives in ``meta.schema_version``;
a file written by a newer workstation is refused, an older one is upgraded on open by the
steps in ``MIGRATIONS`` (each step runs in one transaction and is itself audited).

Tables (schema version 1; version 2 adds ``suggestions``, below):

``meta``         key/value: format, schema_version, study_id, recording_path,
                 recording_fingerprint, recording_start, n_epochs, created, and the audit head
                 (``audit_head_seq``, ``audit_head_hash``) that lets ``verify`` notice a truncated
                 trail.
``montage``      role -> derivation (positive, negative); positive NULL = role missing.
``epochs``       epoch index (0-based) -> current stage.
``decisions``    every scoring decision ever made; append-only (triggers refuse UPDATE/DELETE).
``audit_events`` the hash-chained audit trail; append-only (triggers refuse UPDATE/DELETE).
``ui_state``     key/value the viewer restores (current epoch, ...); not audited.

Schema version 2 adds ``suggestions``: the AI's answers, one row per
(model_id, renderer_version, epoch, pass) where pass is ``fast`` (stage + rule IDs) or
``rationale`` (the same request asking for the reasoning too). A suggestion is not a decision:
storing one changes no stage. The table is append-only (triggers, as for ``decisions``); the
run that stores them is audited once when it starts and once when it ends
(``core.study.suggestions``), and accepting or overriding one is an ordinary decision (source
``ai_accepted`` / ``ai_overridden``) whose audit payload names the suggestion.

Schema version 3 adds ``second_opinions``: an independent stager's answer (``core.trust.second_opinion``,
YASA), one row per (epoch, method) with the stage and the five stage probabilities. Like
suggestions it is never a decision; the table is append-only and each run is audited once.

Schema version 4 adds the model's confidence to ``suggestions``: ``stage_probability`` (the
probability of the suggested stage) and ``p_w`` .. ``p_r`` (the five stage probabilities, sum 1;
``core.model.stage_confidence``), all NULL when unknown: suggestions stored before version 4, a server
that returns no token probabilities, an answer with no stage. The columns are added with
``ALTER TABLE ... ADD COLUMN`` (old rows read NULL; nothing is rewritten, so the append-only
triggers and the audit trail are untouched).

Schema version 5 adds other scorers (``core.study.scorings``): ``scorers`` names each scoring
held beside the study's own (imported from a file, or scored blind by a second technologist),
``scorer_stages`` holds its stage per epoch, and ``adjudications`` the stage a person chose
where the scorers' consensus was tied (the last one per epoch stands). All three are
append-only; every import and adjudication is an audit event.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

from ...errors import StudyError

SCHEMA_VERSION = 5
FORMAT_NAME = "sleepvlm-ws study"
APPLICATION_ID = 0x534C5657  # "SLVW" in the SQLite header: marks the file as a study
SQLITE_HEADER = b"SQLite format 3\x00"
# Seconds a write waits for another program's lock on the file before giving up.
BUSY_TIMEOUT_S = 3.0

_STAGE_CHECK = "('W','N1','N2','N3','R','?','A')"

SCHEMA_V1 = f"""
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE montage (
    role     TEXT PRIMARY KEY,
    positive TEXT,
    negative TEXT
);
CREATE TABLE epochs (
    epoch INTEGER PRIMARY KEY CHECK (epoch >= 0),
    stage TEXT NOT NULL CHECK (stage IN {_STAGE_CHECK})
);
CREATE TABLE decisions (
    id       INTEGER PRIMARY KEY,
    epoch    INTEGER NOT NULL,
    stage    TEXT NOT NULL CHECK (stage IN {_STAGE_CHECK}),
    previous TEXT NOT NULL CHECK (previous IN {_STAGE_CHECK}),
    source   TEXT NOT NULL,
    scorer   TEXT NOT NULL,
    time     TEXT NOT NULL,
    note     TEXT,
    undoes   INTEGER REFERENCES decisions(id)
);
CREATE INDEX decisions_by_undoes ON decisions(undoes);
CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY,
    time      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    payload   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE ui_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TRIGGER audit_events_append_only_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_events_append_only_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER decisions_append_only_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER decisions_append_only_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
"""

# Schema version 2: the AI's suggestions (see core.study.suggestions). ``stage`` is the parsed stage,
# NULL when the answer named none; rules/flags/repaired are JSON text.
SUGGESTIONS_V2 = """
CREATE TABLE suggestions (
    id                INTEGER PRIMARY KEY,
    model_id          TEXT NOT NULL,
    renderer_version  TEXT NOT NULL,
    epoch             INTEGER NOT NULL CHECK (epoch >= 0),
    pass              TEXT NOT NULL CHECK (pass IN ('fast', 'rationale')),
    stage_text        TEXT NOT NULL,
    stage             TEXT CHECK (stage IS NULL OR stage IN ('W','N1','N2','N3','R')),
    rules             TEXT NOT NULL,
    rationale         TEXT,
    flags             TEXT NOT NULL,
    repaired          TEXT NOT NULL,
    raw               TEXT NOT NULL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    seconds           REAL,
    created           TEXT NOT NULL,
    UNIQUE (model_id, renderer_version, epoch, pass)
);
CREATE TRIGGER suggestions_append_only_update BEFORE UPDATE ON suggestions
BEGIN SELECT RAISE(ABORT, 'suggestions are append-only'); END;
CREATE TRIGGER suggestions_append_only_delete BEFORE DELETE ON suggestions
BEGIN SELECT RAISE(ABORT, 'suggestions are append-only'); END;
"""


def _add_suggestions(conn: sqlite3.Connection) -> None:
    for statement in _statements(SUGGESTIONS_V2):
        conn.execute(statement)


# Schema version 3: a second opinion per epoch (see core.trust.second_opinion). ``method`` names the
# stager, its version and classifier; p_* are the probabilities of W, N1, N2, N3, R (sum 1).
SECOND_OPINIONS_V3 = """
CREATE TABLE second_opinions (
    epoch    INTEGER NOT NULL CHECK (epoch >= 0),
    method   TEXT NOT NULL CHECK (method != ''),
    stage    TEXT NOT NULL CHECK (stage IN ('W','N1','N2','N3','R')),
    p_w      REAL NOT NULL CHECK (p_w BETWEEN 0 AND 1),
    p_n1     REAL NOT NULL CHECK (p_n1 BETWEEN 0 AND 1),
    p_n2     REAL NOT NULL CHECK (p_n2 BETWEEN 0 AND 1),
    p_n3     REAL NOT NULL CHECK (p_n3 BETWEEN 0 AND 1),
    p_r      REAL NOT NULL CHECK (p_r BETWEEN 0 AND 1),
    channels TEXT NOT NULL,
    created  TEXT NOT NULL,
    PRIMARY KEY (epoch, method)
);
CREATE TRIGGER second_opinions_append_only_update BEFORE UPDATE ON second_opinions
BEGIN SELECT RAISE(ABORT, 'second opinions are append-only'); END;
CREATE TRIGGER second_opinions_append_only_delete BEFORE DELETE ON second_opinions
BEGIN SELECT RAISE(ABORT, 'second opinions are append-only'); END;
"""


def _add_second_opinions(conn: sqlite3.Connection) -> None:
    for statement in _statements(SECOND_OPINIONS_V3):
        conn.execute(statement)


# Schema version 4: the model's stage probabilities on each suggestion (NULL: unknown).
SUGGESTION_PROBABILITY_COLUMNS = ("stage_probability", "p_w", "p_n1", "p_n2", "p_n3", "p_r")


def _add_stage_probabilities(conn: sqlite3.Connection) -> None:
    for column in SUGGESTION_PROBABILITY_COLUMNS:
        conn.execute(f"ALTER TABLE suggestions ADD COLUMN {column} REAL "
                     f"CHECK ({column} IS NULL OR {column} BETWEEN 0 AND 1)")


# Schema version 5: other scorers' hypnograms and the adjudication of their consensus's ties.
SCORERS_V5 = f"""
CREATE TABLE scorers (
    name    TEXT PRIMARY KEY CHECK (name != ''),
    kind    TEXT NOT NULL CHECK (kind IN ('imported', 'blind')),
    source  TEXT NOT NULL,
    sha256  TEXT,
    actor   TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE scorer_stages (
    scorer TEXT NOT NULL REFERENCES scorers(name),
    epoch  INTEGER NOT NULL CHECK (epoch >= 0),
    stage  TEXT NOT NULL CHECK (stage IN {_STAGE_CHECK}),
    PRIMARY KEY (scorer, epoch)
);
CREATE TABLE adjudications (
    id     INTEGER PRIMARY KEY,
    epoch  INTEGER NOT NULL CHECK (epoch >= 0),
    stage  TEXT NOT NULL CHECK (stage IN ('W','N1','N2','N3','R')),
    tied   TEXT NOT NULL,
    scorer TEXT NOT NULL,
    time   TEXT NOT NULL,
    note   TEXT
);
CREATE TRIGGER scorers_append_only_update BEFORE UPDATE ON scorers
BEGIN SELECT RAISE(ABORT, 'scorers are append-only'); END;
CREATE TRIGGER scorers_append_only_delete BEFORE DELETE ON scorers
BEGIN SELECT RAISE(ABORT, 'scorers are append-only'); END;
CREATE TRIGGER scorer_stages_append_only_update BEFORE UPDATE ON scorer_stages
BEGIN SELECT RAISE(ABORT, 'scorer stages are append-only'); END;
CREATE TRIGGER scorer_stages_append_only_delete BEFORE DELETE ON scorer_stages
BEGIN SELECT RAISE(ABORT, 'scorer stages are append-only'); END;
CREATE TRIGGER adjudications_append_only_update BEFORE UPDATE ON adjudications
BEGIN SELECT RAISE(ABORT, 'adjudications are append-only'); END;
CREATE TRIGGER adjudications_append_only_delete BEFORE DELETE ON adjudications
BEGIN SELECT RAISE(ABORT, 'adjudications are append-only'); END;
"""


def _add_scorers(conn: sqlite3.Connection) -> None:
    for statement in _statements(SCORERS_V5):
        conn.execute(statement)


# Migration steps: MIGRATIONS[v] upgrades a study from schema v to v + 1 inside the caller's
# write transaction (the caller bumps meta.schema_version and audits the step). A new study
# is built by the same steps, so a migrated file and a new one have the same schema.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _add_suggestions,
                                                               2: _add_second_opinions,
                                                               3: _add_stage_probabilities,
                                                               4: _add_scorers}


def create_schema(conn: sqlite3.Connection, version: int = SCHEMA_VERSION) -> None:
    """Create the schema of ``version`` (default: the current one) in an empty database
    (inside the caller's transaction)."""
    for statement in _statements(SCHEMA_V1):
        conn.execute(statement)
    for step in range(1, version):
        MIGRATIONS[step](conn)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def _statements(script: str) -> list[str]:
    # Split on ";" that end a statement; trigger bodies end with "; END;".
    out, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        text = "\n".join(buf).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            out.append(text)
            buf = []
    return out


def get_meta(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else row[0]


def set_meta(conn: sqlite3.Connection, key: str, value: object) -> None:
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, str(value)))


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {k: v for k, v in conn.execute("SELECT key, value FROM meta")}


def connect(path: Path, *, timeout: float | None = None) -> sqlite3.Connection:
    """Open an existing file as SQLite without ever creating one (autocommit mode).

    The connection may be handed from the thread that opened it (the GUI's loader thread) to
    another (the GUI thread); a Study must still be used by one thread at a time.
    """
    uri = path.resolve().as_uri() + "?mode=rw"
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_S if timeout is None else timeout)


def connect_new(path: Path) -> sqlite3.Connection:
    """Create a new SQLite file (autocommit mode)."""
    return sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)

def locate_recording(study_path: Path, stored: str) -> Path:
    """The recording as stored, or, if the folder moved, the file of that name beside the study."""
    recorded = Path(stored)
    if not recorded.exists():
        beside = study_path.parent / recorded.name
        if beside.exists():
            return beside
    return recorded

def sidecars(p: Path) -> list[Path]:
    return [p.with_name(p.name + "-wal"), p.with_name(p.name + "-shm"),
            p.with_name(p.name + "-journal")]

def set_durability(conn: sqlite3.Connection) -> None:
    """WAL + synchronous=FULL: a committed decision survives a crash or power loss."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")


def open_study_connection(path: str | Path) -> tuple[sqlite3.Connection, int]:
    """Open a study file, check it is one of ours; return (connection, schema version).

    Raises StudyError (one line naming the file) for a missing file, a folder, an empty or
    non-SQLite file, an SQLite file that is not a study, or a study from a newer version.
    Nothing is written to the file here (so a wrong file is never touched).
    """
    p = Path(path)
    _check_file(p)
    try:
        conn = connect(p)
    except sqlite3.Error as exc:
        raise StudyError(p, f"cannot open the study file ({exc})") from None
    try:
        version = _check_is_study(conn, p)
    except BaseException:
        conn.close()
        raise
    return conn, version


def _check_file(p: Path) -> None:
    if p.is_dir():
        raise StudyError(p, "is a folder, not a study file")
    if not p.exists():
        raise StudyError(p, "no such study file")
    try:
        with open(p, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StudyError(p, f"cannot read the study file ({exc.strerror or exc})") from None
    if not header:
        raise StudyError(p, "is an empty file, not a study")
    if header != SQLITE_HEADER:
        raise StudyError(p, "is not a study file (not an SQLite database)")


def _check_is_study(conn: sqlite3.Connection, p: Path) -> int:
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        fmt = version_text = None
        if has_meta:
            fmt = get_meta(conn, "format")
            version_text = get_meta(conn, "schema_version")
    except sqlite3.DatabaseError as exc:
        raise StudyError(p, describe_sqlite_error(exc, "cannot read the study file")) from None
    if app_id != APPLICATION_ID or fmt != FORMAT_NAME:
        raise StudyError(p, "is an SQLite database but not a SleepVLM study")
    try:
        version = int(version_text or "")
    except ValueError:
        message = f"study file is damaged (bad schema version {version_text!r})"
        raise StudyError(p, message) from None
    if version > SCHEMA_VERSION:
        raise StudyError(p, f"was written by a newer SleepVLM Workstation (study format {version}; "
                            f"this version reads up to {SCHEMA_VERSION})")
    if version < 1:
        raise StudyError(p, f"study file is damaged (bad schema version {version})")
    return version


def describe_sqlite_error(exc: sqlite3.Error, doing: str) -> str:
    """One line for the user: what we were doing and why SQLite refused."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        why = "the study file is locked by another program"
    elif "readonly" in text or "read-only" in text:
        why = "the study file or its folder is read-only"
    elif "not a database" in text:
        why = "not an SQLite database"
    elif "malformed" in text or "corrupt" in text:
        why = "the study file is damaged"
    elif "full" in text:
        why = "the disk is full"
    elif "unable to open" in text:
        why = "the file or its folder cannot be written"
    else:
        why = str(exc)
    return f"{doing}: {why}"
