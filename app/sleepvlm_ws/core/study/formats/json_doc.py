"""The workstation's own JSON document: stages plus the study's decisions and audit trail."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

from ....errors import HypnogramFormatError
from ...base.hypnogram import Hypnogram
from ._common import FileScoring, as_record, plain_json, read_bytes, stage_of, write_bytes_atomically

NAME = "json"
SUFFIXES = (".json",)
DESCRIPTION = "SleepVLM Workstation JSON"

FORMAT_NAME = "sleepvlm-ws hypnogram"
VERSION = 1


def write(hyp: Hypnogram, path: Path, *, decisions=None, audit=None, meta=None) -> None:
    document = {
        "format": FORMAT_NAME,
        "version": VERSION,
        "epoch_s": hyp.epoch_s,
        "start": None if hyp.start is None else hyp.start.isoformat(),
        "stages": [stage.value for stage in hyp.stages],
        "meta": dict(meta or {}),
        "decisions": [as_record(d) for d in (decisions or [])],
        "audit": [as_record(a) for a in (audit or [])],
    }
    try:
        text = json.dumps(document, indent=1, ensure_ascii=False, default=plain_json,
                          allow_nan=False)
    except (TypeError, ValueError) as e:
        raise HypnogramFormatError(path, f"cannot write: {e}") from None
    write_bytes_atomically(path, (text + "\n").encode("utf-8"))


def read(path: Path) -> FileScoring:
    data = read_bytes(path)
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise HypnogramFormatError(path, "not UTF-8 text: not a JSON hypnogram") from None
    except json.JSONDecodeError as e:
        raise HypnogramFormatError(
            path, f"line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise HypnogramFormatError(path, "JSON nested too deeply: not a hypnogram") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise HypnogramFormatError(path, f"not a {FORMAT_NAME} document (no \"format\" field naming it)")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise HypnogramFormatError(path, f"bad \"version\": {version!r}")
    if version > VERSION:
        raise HypnogramFormatError(
            path, f"written by a newer version of the workstation (document version {version})")
    epoch_s = document.get("epoch_s", 30.0)
    if (not isinstance(epoch_s, (int, float)) or isinstance(epoch_s, bool)
            or not math.isfinite(epoch_s) or epoch_s <= 0):
        raise HypnogramFormatError(path, f"bad \"epoch_s\": {epoch_s!r}")
    stages = document.get("stages")
    if not isinstance(stages, list):
        raise HypnogramFormatError(path, "has no \"stages\" list")
    start = document.get("start")
    if start is not None:
        try:
            start = datetime.fromisoformat(str(start))
        except ValueError:
            raise HypnogramFormatError(path, f"bad \"start\": {str(start)[:40]!r}") from None
    periods = [(i * float(epoch_s), float(epoch_s), stage_of(path, label, f"stages[{i}]"))
               for i, label in enumerate(stages)]
    meta = document.get("meta") if isinstance(document.get("meta"), dict) else {}
    return FileScoring(periods, start=start, meta=meta)


def sniff(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")
