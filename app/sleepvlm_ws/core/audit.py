"""The audit trail: an append-only, hash-chained log of everything that changed a study.

Each event is ``AuditEvent(seq, time, actor, kind, payload, prev_hash, hash)``:

* ``seq`` counts from 1 with no gaps; ``time`` is ISO-8601 UTC; ``actor`` is the scorer;
* ``hash = sha256(canonical_json({"seq", "time", "actor", "kind", "payload", "prev_hash"}))``
  as lowercase hex, where ``canonical_json`` is JSON with sorted keys, no spaces, ASCII only;
* the first event's ``prev_hash`` is ``genesis_hash(study_id)``, every later one the previous
  event's ``hash``.

The study also keeps the head of the chain (latest seq and hash) in its ``meta`` table, so a
trail whose last events were cut off is noticed. Triggers refuse UPDATE and DELETE on the
trail; someone who drops them and edits the file breaks the chain, which ``verify`` finds.
Out of scope: someone who rewrites the whole trail, the tables and the head consistently;
that needs a signature kept outside the file (a later issue).

Every state change in a study writes its event in the same transaction as the change
(``append_event`` runs inside the caller's transaction).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import StudyError
from .study_schema import describe_sqlite_error, get_meta, open_study_connection, set_meta

# Event kinds
STUDY_CREATED = "study_created"
MONTAGE_SET = "montage_set"
DECISION = "decision"        # payload: decision, epoch, stage, previous, source, note
UNDO = "undo"                # payload: as DECISION plus undoes
IMPORT = "import"            # payload: file, counts, ...
EXPORT = "export"            # payload: format, file, ...
SCHEMA_MIGRATED = "schema_migrated"
GENERIC = "event"            # anything later issues need to log
# Kinds that change the study's tables: only Study itself writes these.
STATE_KINDS = (STUDY_CREATED, MONTAGE_SET, DECISION, UNDO)

_GENESIS_PREFIX = "sleepvlm-ws audit genesis "


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    time: str
    actor: str
    kind: str
    payload: dict
    prev_hash: str
    hash: str

    @property
    def label(self) -> str:
        """``event 17 (decision, epoch 42)``: how messages name this event."""
        return event_label(self.seq, self.kind, self.payload)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_bad_seq: int | None
    reason: str          # one line, ready to print
    n_events: int = 0

    def __bool__(self) -> bool:
        return self.ok


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def genesis_hash(study_id: str) -> str:
    return hashlib.sha256((_GENESIS_PREFIX + study_id).encode("ascii", "replace")).hexdigest()


def event_hash(seq: int, time: str, actor: str, kind: str, payload: dict, prev_hash: str) -> str:
    body = canonical_json({"seq": seq, "time": time, "actor": actor, "kind": kind,
                           "payload": payload, "prev_hash": prev_hash})
    return hashlib.sha256(body.encode("ascii")).hexdigest()


def event_label(seq: int, kind: object, payload: object) -> str:
    epoch = payload.get("epoch") if isinstance(payload, dict) else None
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        return f"event {seq} ({kind}, epoch {epoch})"
    return f"event {seq} ({kind})"


def read_head(conn: sqlite3.Connection) -> tuple[int, str]:
    """(seq, hash) of the latest event as the study recorded it; (0, genesis) when empty."""
    seq = int(get_meta(conn, "audit_head_seq", "0") or 0)
    if seq == 0:
        return 0, genesis_hash(get_meta(conn, "study_id", "") or "")
    return seq, get_meta(conn, "audit_head_hash", "") or ""


def append_event(conn: sqlite3.Connection, kind: str, payload: dict, actor: str,
                 time: str | None = None) -> AuditEvent:
    """Append one event and move the recorded head; call inside the change's transaction."""
    head_seq, head_hash = read_head(conn)
    seq, when = head_seq + 1, time or utc_now_iso()
    payload = json.loads(canonical_json(payload))  # store exactly what is hashed
    digest = event_hash(seq, when, actor, kind, payload, head_hash)
    conn.execute(
        "INSERT INTO audit_events(seq, time, actor, kind, payload, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (seq, when, actor, kind, canonical_json(payload), head_hash, digest))
    set_meta(conn, "audit_head_seq", seq)
    set_meta(conn, "audit_head_hash", digest)
    return AuditEvent(seq, when, actor, kind, payload, head_hash, digest)


def read_events(conn: sqlite3.Connection) -> list[AuditEvent]:
    rows = conn.execute("SELECT seq, time, actor, kind, payload, prev_hash, hash "
                        "FROM audit_events ORDER BY seq").fetchall()
    return [AuditEvent(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]


# ------------------------------------------------------------------------------ verify
def verify(path: str | Path) -> VerifyResult:
    """Check a study file's audit trail and that its tables agree with it.

    Returns ``VerifyResult(ok, first_bad_seq, reason)``; ``reason`` is one line naming the
    first broken event. Raises StudyError when the file is not a readable study at all.
    """
    conn, _version = open_study_connection(path)
    try:
        return verify_connection(conn, Path(path))
    finally:
        conn.close()


def verify_connection(conn: sqlite3.Connection, path: Path | None = None) -> VerifyResult:
    """``verify`` on an open connection (reads one consistent snapshot, writes nothing)."""
    from .audit_replay import check_tables  # the table replay lives beside this module

    try:
        conn.execute("BEGIN")
        try:
            rows = conn.execute("SELECT seq, time, actor, kind, payload, prev_hash, hash "
                                "FROM audit_events ORDER BY seq").fetchall()
            study_id = get_meta(conn, "study_id", "") or ""
            head = (get_meta(conn, "audit_head_seq"), get_meta(conn, "audit_head_hash"))
            events, bad = _walk_chain(rows, study_id)
            if bad is None:
                bad = _check_head(events, head)
            if bad is None:
                bad = check_tables(conn, events)
        finally:
            conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise StudyError(path, describe_sqlite_error(exc, "cannot read the audit trail")) from None
    if bad is not None:
        seq, reason = bad
        return VerifyResult(False, seq, reason, len(events))
    count = f"{len(events)} event" + ("" if len(events) == 1 else "s")
    return VerifyResult(True, None, f"{count}, the study's tables agree with the trail",
                        len(events))


def _walk_chain(rows: list[tuple], study_id: str) -> tuple[list[AuditEvent], tuple | None]:
    """Follow the chain from the genesis; stop at the first event that breaks it."""
    events: list[AuditEvent] = []
    seq_of_hash: dict[str, int] = {}
    prev_hash, expected = genesis_hash(study_id), 1
    for seq, time, actor, kind, payload_text, stored_prev, stored_hash in rows:
        if seq != expected:
            if isinstance(seq, int) and seq > expected:
                where = (f"the trail starts at event {seq}" if expected == 1 else
                         f"the trail jumps from event {expected - 1} to event {seq}")
                return events, (expected, f"event {expected} is missing: {where}")
            return events, (expected, f"event {expected} is missing or out of order")
        payload = _decode_payload(payload_text)
        label = event_label(seq, kind, payload)
        if payload is None:
            return events, (seq, f"{label}: its payload is not valid JSON")
        if not all(isinstance(v, str) for v in (time, actor, kind, stored_prev, stored_hash)):
            return events, (seq, f"{label}: its stored fields are malformed")
        if stored_prev != prev_hash:
            skipped_to = seq_of_hash.get(stored_prev)
            if skipped_to is not None and skipped_to < seq - 1:
                inserted = skipped_to + 1
                return events, (inserted, f"{events[inserted - 1].label}: was inserted into the "
                                          f"trail (event {seq} links back to event {skipped_to})")
            after = "the start of the trail" if seq == 1 else f"event {seq - 1}"
            return events, (seq, f"{label}: chain broken, it does not link to {after} "
                                 f"(an event was removed, replaced or reordered)")
        if event_hash(seq, time, actor, kind, payload, stored_prev) != stored_hash:
            return events, (seq, f"{label}: hash does not match its contents")
        events.append(AuditEvent(seq, time, actor, kind, payload, stored_prev, stored_hash))
        seq_of_hash[stored_hash] = seq
        prev_hash, expected = stored_hash, expected + 1
    if not events:
        return events, (1, "event 1 is missing: the audit trail is empty")
    return events, None


def _decode_payload(text: object) -> dict | None:
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _reject_constant(name: str) -> None:
    raise ValueError(f"not JSON: {name}")


def _check_head(events: list[AuditEvent], head: tuple[str | None, str | None]) -> tuple | None:
    """The study's recorded head must be the last event: catches a truncated or extended trail."""
    try:
        head_seq = int(head[0] or "")
    except ValueError:
        return None, "the study's record of its last audit event is missing or damaged"
    last = events[-1]
    if last.seq < head_seq:
        return (last.seq + 1, f"event {last.seq + 1} is missing: the trail ends at event "
                              f"{last.seq} but the study recorded {head_seq} events (truncated)")
    if last.seq > head_seq:
        extra = events[max(head_seq, 0)]
        return (extra.seq, f"{extra.label}: comes after the study's recorded last event "
                           f"{head_seq} (added outside the workstation)")
    if last.hash != head[1]:
        return last.seq, f"{last.label}: does not match the study's recorded last event"
    return None
