"""Replay a verified audit trail and compare it with the study's tables.

The chain proves the events were not edited; this proves the tables the workstation reads
(``epochs``, ``decisions``, ``montage``, ``meta``) say what the events say. A problem is
reported against the event that the table contradicts (for an epoch: the last event that set
it, ``study_created`` when it was never scored); the lowest such event comes first.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from ..base.stages import Stage
from .audit import DECISION, MONTAGE_SET, STUDY_CREATED, UNDO, AuditEvent
from .decision import SOURCES
from .decision import UNDO as UNDO_SOURCE
from .study_schema import get_meta

_STAGES = {s.value for s in Stage}
_LAST = float("inf")


class _ReplayMismatch(Exception):
    """The trail, replayed, does not give the tables: at event ``seq`` (None: before any), why."""

    def __init__(self, seq: int | None, reason: str):
        super().__init__(reason)
        self.seq, self.reason = seq, reason


@dataclass
class _Replay:
    n_epochs: int
    montage: dict
    montage_event: AuditEvent
    created: AuditEvent
    stages: list[str] = field(default_factory=list)
    set_by: list[AuditEvent] = field(default_factory=list)
    decisions: dict[int, tuple[AuditEvent, tuple]] = field(default_factory=dict)
    undone: set[int] = field(default_factory=set)


def check_tables(conn: sqlite3.Connection, events: list[AuditEvent]) -> tuple | None:
    """``None`` when the tables agree with the events, else ``(first_bad_seq, reason)``."""
    try:
        replay = _replay(events)
        _check_meta(conn, replay)
    except _ReplayMismatch as bad:
        return bad.seq, bad.reason
    problems = _decision_problems(conn, replay) + _epoch_problems(conn, replay)
    problems += _montage_problems(conn, replay)
    if not problems:
        return None
    seq, reason = min(problems, key=lambda p: _LAST if p[0] is None else p[0])
    return seq, reason


def _replay(events: list[AuditEvent]) -> _Replay:
    first = events[0]
    if first.kind != STUDY_CREATED:
        raise _ReplayMismatch(first.seq, f"{first.label}: the trail does not begin with {STUDY_CREATED}")
    n_epochs = first.payload.get("n_epochs")
    montage = first.payload.get("montage")
    if not _is_int(n_epochs) or n_epochs < 0 or not isinstance(montage, dict):
        raise _ReplayMismatch(first.seq, f"{first.label}: its payload lacks n_epochs or montage")
    state = _Replay(n_epochs, montage, first, first, ["?"] * n_epochs, [first] * n_epochs)
    for event in events[1:]:
        if event.kind == STUDY_CREATED:
            raise _ReplayMismatch(event.seq, f"{event.label}: a second {STUDY_CREATED} in one trail")
        if event.kind == MONTAGE_SET:
            montage = event.payload.get("montage")
            if not isinstance(montage, dict):
                raise _ReplayMismatch(event.seq, f"{event.label}: its payload lacks the montage")
            state.montage, state.montage_event = montage, event
        elif event.kind in (DECISION, UNDO):
            _replay_decision(state, event)
    return state


def _replay_decision(state: _Replay, event: AuditEvent) -> None:
    p = event.payload
    did, epoch = p.get("decision"), p.get("epoch")
    stage, previous = p.get("stage"), p.get("previous")
    source, note, undoes = p.get("source"), p.get("note"), p.get("undoes")
    if not (_is_int(did) and _is_int(epoch) and stage in _STAGES and previous in _STAGES
            and source in SOURCES and (note is None or isinstance(note, str))):
        raise _ReplayMismatch(event.seq, f"{event.label}: its payload is not a valid decision")
    if not 0 <= epoch < state.n_epochs:
        raise _ReplayMismatch(event.seq, f"{event.label}: epoch {epoch} is outside the recording's "
                              f"{state.n_epochs} epochs")
    expected_id = len(state.decisions) + 1
    if did != expected_id:
        raise _ReplayMismatch(event.seq, f"{event.label}: decision number {did} is out of sequence "
                              f"(expected {expected_id})")
    if (event.kind == UNDO) != (source == UNDO_SOURCE):
        raise _ReplayMismatch(event.seq, f"{event.label}: event kind and decision source {source} disagree")
    if event.kind == UNDO:
        target = state.decisions.get(undoes) if _is_int(undoes) else None
        if target is None or target[1][4] == UNDO_SOURCE:
            raise _ReplayMismatch(event.seq, f"{event.label}: it undoes decision {undoes}, which is not an "
                                  f"earlier decision")
        if undoes in state.undone:
            raise _ReplayMismatch(event.seq, f"{event.label}: decision {undoes} was already undone")
        state.undone.add(undoes)
    elif undoes is not None:
        raise _ReplayMismatch(event.seq, f"{event.label}: only an undo may name a decision it undoes")
    if previous != state.stages[epoch]:
        raise _ReplayMismatch(event.seq, f"{event.label}: records the previous stage as {previous} but the "
                              f"trail before it leaves epoch {epoch} at {state.stages[epoch]}")
    state.stages[epoch] = stage
    state.set_by[epoch] = event
    record = (did, epoch, stage, previous, source, event.actor, event.time, note, undoes)
    state.decisions[did] = (event, record)


def _check_meta(conn: sqlite3.Connection, state: _Replay) -> None:
    created = state.created
    for key, meta_key in (("n_epochs", "n_epochs"),
                          ("recording_fingerprint", "recording_fingerprint")):
        in_event = created.payload.get(key)
        in_meta = get_meta(conn, meta_key)
        if in_meta != ("" if in_event is None else str(in_event)):
            raise _ReplayMismatch(created.seq, f"{created.label}: the study's {key} ({in_meta}) differs "
                                    f"from this event ({in_event})")


_FIELDS = ("id", "epoch", "stage", "previous", "source", "scorer", "time", "note", "undoes")


def _decision_problems(conn: sqlite3.Connection, state: _Replay) -> list[tuple]:
    rows = conn.execute("SELECT id, epoch, stage, previous, source, scorer, time, note, undoes "
                        "FROM decisions ORDER BY id").fetchall()
    problems, seen = [], set()
    for row in rows:
        did = row[0]
        seen.add(did)
        if did not in state.decisions:
            problems.append((None, f"decision {did} is in the decisions table but in no audit "
                                   f"event (added outside the workstation)"))
            continue
        event, record = state.decisions[did]
        for name, in_table, in_trail in zip(_FIELDS, tuple(row), record):
            if in_table != in_trail:
                problems.append((event.seq, f"{event.label}: the decisions table disagrees with "
                                            f"this event (decision {did} {name}: {in_table!r} "
                                            f"in the table, {in_trail!r} in the trail)"))
                break
    for did, (event, _record) in state.decisions.items():
        if did not in seen:
            problems.append((event.seq, f"{event.label}: its decision {did} is missing from "
                                        f"the decisions table"))
    return problems


def _epoch_problems(conn: sqlite3.Connection, state: _Replay) -> list[tuple]:
    table = dict(conn.execute("SELECT epoch, stage FROM epochs").fetchall())
    problems = []
    for epoch, expected in enumerate(state.stages):
        event = state.set_by[epoch]
        if epoch not in table:
            problems.append((event.seq, f"{event.label}: epoch {epoch} is missing from the "
                                        f"epochs table"))
        elif table[epoch] != expected:
            problems.append((event.seq, f"{event.label}: the epochs table shows epoch {epoch} "
                                        f"as {table[epoch]} but the trail leaves it at {expected}"))
    extra = sorted(e for e in table if not (_is_int(e) and 0 <= e < state.n_epochs))
    if extra:
        problems.append((None, f"the epochs table has epoch {extra[0]}, beyond the recording's "
                               f"{state.n_epochs} epochs"))
    return problems


def _montage_problems(conn: sqlite3.Connection, state: _Replay) -> list[tuple]:
    table = {role: (None if pos is None else [pos, neg])
             for role, pos, neg in conn.execute("SELECT role, positive, negative FROM montage")}
    if table != state.montage:
        event = state.montage_event
        return [(event.seq, f"{event.label}: the montage table disagrees with this event")]
    return []


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
