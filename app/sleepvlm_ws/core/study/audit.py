"""The audit trail: an append-only, hash-chained log of everything that changed a study.

Each event is ``AuditEvent(seq, time, actor, kind, payload, prev_hash, hash)``:

* ``seq`` counts from 1 with no gaps; ``time`` is ISO-8601 UTC; ``actor`` is the scorer;
* ``hash = sha256(canonical_json({"seq", "time", "actor", "kind", "payload", "prev_hash"}))``
  as lowercase hex, where ``canonical_json`` is JSON with sorted keys, no spaces, ASCII only;
* the first event's ``prev_hash`` is ``genesis_hash(study_id)``, every later one the previous
  event's ``hash``.

The study also keeps the head of the chain (latest seq and hash) in its ``meta`` table, so a
trail whose last events were cut off is noticed. Triggers refuse UPDATE and DELETE on the
trail; someone who drops them and edits the file breaks the chain, which ``audit_verify.verify``
finds.
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
from typing import Any

from .study_schema import get_meta, set_meta

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
