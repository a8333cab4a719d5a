"""Verifying a study's audit trail: the hash chain from its genesis, the study's recorded head
(a truncated or extended trail), and the replay of the events against the study's tables
(``audit_replay``). Reads one consistent snapshot and writes nothing."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ...errors import StudyError
from .audit import AuditEvent, event_hash, event_label, genesis_hash
from .audit_replay import check_tables
from .study_schema import describe_sqlite_error, get_meta, open_study_connection


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_bad_seq: int | None
    reason: str          # one line, ready to print
    n_events: int = 0

    def __bool__(self) -> bool:
        return self.ok


def verify(path: str | Path) -> VerifyResult:
    """Check a study file's audit trail and that its tables agree with it.

    Follows the hash chain from its genesis, compares its end with the study's recorded last
    event (a truncated or extended trail) and replays the events against the tables. Reads one
    consistent snapshot and writes nothing.

    Parameters
    ----------
    path : str or Path
        The study file.

    Returns
    -------
    VerifyResult
        ``ok``; ``first_bad_seq``, the number of the first broken event (None when all is well, or
        when the study's record of its last event is itself damaged); ``reason``, one line naming
        the first broken event (when all is well, counting the events); ``n_events``, the events
        that chain correctly from the genesis.

    Raises
    ------
    StudyError
        When the file is not a readable study at all.
    """
    conn, _version = open_study_connection(path)
    try:
        return verify_connection(conn, Path(path))
    finally:
        conn.close()


def verify_connection(conn: sqlite3.Connection, path: Path | None = None) -> VerifyResult:
    """``verify`` on an open connection (reads one consistent snapshot, writes nothing)."""
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
