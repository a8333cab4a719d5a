"""BIDS-style events table (``*_events.tsv``): onset, duration, stage; one row per epoch, and
``suggested_by`` (BIDS allows extra columns) when the study's decisions are given: for a stage
that is an accepted suggestion, where that suggestion's stage came from (the real-trained
stager's method, or ``model:`` and the model id); ``n/a`` for a stage the scorer chose.

Import also takes one row per scored period (a duration of several epochs) and the BIDS
``n/a`` for a missing duration (one epoch) or stage (unscored).
"""

from __future__ import annotations

from pathlib import Path

from ...base.hypnogram import Hypnogram
from ._common import (FileScoring, decode_text, last_decision_per_epoch, read_bytes, seconds_text,
                      write_bytes_atomically)
from ._table import read_table

NAME = "tsv"
SUFFIXES = (".tsv",)
DESCRIPTION = "BIDS events table"


def write(hyp: Hypnogram, path: Path, *, decisions=None, audit=None, meta=None) -> None:
    last = None if decisions is None else last_decision_per_epoch(decisions)
    lines = ["onset\tduration\tstage" + ("" if last is None else "\tsuggested_by")]
    duration = seconds_text(hyp.epoch_s)
    for i, stage in enumerate(hyp.stages):
        row = f"{seconds_text(hyp.onset(i))}\t{duration}\t{stage.value}"
        if last is not None:
            decision = last.get(i, {})
            accepted = decision.get("source") == "ai_accepted"
            row += "\t" + str((decision.get("suggested_by") if accepted else None) or "n/a")
        lines.append(row)
    write_bytes_atomically(path, ("\n".join(lines) + "\n").encode("utf-8"))


def read(path: Path) -> FileScoring:
    text = decode_text(path, read_bytes(path))
    return read_table(path, text, "\t", what="tab-separated events file")


def sniff(head: bytes) -> bool:
    first = head.split(b"\n", 1)[0].lower()
    return b"\t" in first and b"onset" in first
