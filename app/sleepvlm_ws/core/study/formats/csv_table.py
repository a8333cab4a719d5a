"""Spreadsheet table: epoch (1-based), onset_s, clock_time, stage, and the source, scorer and
``suggested_by`` (where an accepted or overridden suggested stage came from: the real-trained
stager's method or ``model:`` and the model id) of each epoch's last decision when the study's
decisions are given."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ...base.hypnogram import Hypnogram
from ._common import (FileScoring, decode_text, last_decision_per_epoch, read_bytes, seconds_text,
                      write_bytes_atomically)
from ._table import read_table

NAME = "csv"
SUFFIXES = (".csv",)
DESCRIPTION = "CSV table"


def write(hyp: Hypnogram, path: Path, *, decisions=None, audit=None, meta=None) -> None:
    out = io.StringIO(newline="")
    table = csv.writer(out, lineterminator="\r\n")  # RFC 4180, opens cleanly in Excel
    header = ["epoch", "onset_s", "clock_time", "stage"]
    last = None
    if decisions is not None:
        header += ["source", "scorer", "suggested_by"]
        last = last_decision_per_epoch(decisions)
    table.writerow(header)
    for i, stage in enumerate(hyp.stages):
        clock = hyp.clock_time(i)
        row = [i + 1, seconds_text(hyp.onset(i)), "" if clock is None else clock.strftime("%H:%M:%S"),
               stage.value]
        if last is not None:
            decision = last.get(i, {})
            row += [_text(decision.get("source")), _text(decision.get("scorer")),
                    _text(decision.get("suggested_by"))]
        table.writerow(row)
    write_bytes_atomically(path, out.getvalue().encode("utf-8"))


def read(path: Path) -> FileScoring:
    text = decode_text(path, read_bytes(path))
    first_line = text.lstrip().split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first_line.count)
    return read_table(path, text, delimiter, what="CSV hypnogram")


def sniff(head: bytes) -> bool:
    first = head.split(b"\n", 1)[0].lower()
    return b"stage" in first and (b"," in first or b";" in first)


def _text(value) -> str:
    if value is None:
        return ""
    return str(getattr(value, "value", value))
