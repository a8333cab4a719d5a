"""Reading the annotations of an EDF+ / BDF+ file: its header and its time-stamped annotation
lists (TALs), with no signal data read.

Our own reader, because the libraries fall short on hypnogram files: pyedflib refuses
annotation-only files whose data-record duration is 0 (as Sleep-EDF's ``*-Hypnogram.edf``
declare), and ``mne.read_annotations`` returns an empty list for a file that is not EDF at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ....errors import HypnogramFormatError

ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
MAX_SIGNALS = 4096
_ONSET = re.compile(rb"^[+-]\d+(\.\d*)?$")
_DURATION = re.compile(rb"^\d+(\.\d*)?$")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass
class EdfAnnotations:
    start: datetime | None              # header start (None if unreadable)
    file_type: str                      # "EDF+C", "EDF+D", "BDF+C", ... or "EDF"/"BDF"
    annotations: list[tuple[float, float | None, str]]  # onset s from first record, duration, text
    malformed: int = 0                  # TALs that could not be parsed (skipped)
    complete: bool = True               # every data record the header declares is in the file
    recording_id: str = ""
    extra: dict = field(default_factory=dict)


def read_edf_annotations(path: Path) -> EdfAnnotations:
    """Every annotation of an EDF+/BDF+ file; raises HypnogramFormatError if it is not one."""
    try:
        with open(path, "rb") as f:
            return _read(path, f)
    except OSError as e:
        raise HypnogramFormatError(path, f"cannot read: {e.strerror or e}") from None


def _field(raw: bytes) -> str:
    return raw.decode("ascii", errors="replace").strip()


def _read(path: Path, f) -> EdfAnnotations:
    head = f.read(256)
    if len(head) < 256:
        raise HypnogramFormatError(path, "too short to be an EDF file")
    if head[:8] == b"\xffBIOSEMI":
        bytes_per_sample, family = 3, "BDF"
    elif head[:8] == b"0       ":
        bytes_per_sample, family = 2, "EDF"
    else:
        raise HypnogramFormatError(path, "not an EDF/BDF file (bad header)")
    try:
        header_bytes = int(_field(head[184:192]))
        n_records = int(_field(head[236:244]))
        float(_field(head[244:252]))
        n_signals = int(_field(head[252:256]))
    except ValueError:
        raise HypnogramFormatError(path, "not an EDF/BDF file (unreadable header fields)") from None
    if not 0 <= n_signals <= MAX_SIGNALS or header_bytes != 256 * (n_signals + 1):
        raise HypnogramFormatError(path, "not an EDF/BDF file (header size and signal count disagree)")
    reserved = _field(head[192:236])
    file_type = family + ("+D" if reserved.startswith(family + "+D") else
                          "+C" if reserved.startswith(family + "+C") else "")

    signal_head = f.read(256 * n_signals)
    if len(signal_head) < 256 * n_signals:
        raise HypnogramFormatError(path, "file ends inside its header")
    labels = [_field(signal_head[16 * i:16 * (i + 1)]) for i in range(n_signals)]
    base = 216 * n_signals
    try:
        samples = [int(_field(signal_head[base + 8 * i:base + 8 * (i + 1)])) for i in range(n_signals)]
    except ValueError:
        raise HypnogramFormatError(path, "not an EDF/BDF file (unreadable samples per record)") from None
    if any(n < 0 for n in samples):
        raise HypnogramFormatError(path, "not an EDF/BDF file (negative samples per record)")
    annotation_signals = [i for i, label in enumerate(labels) if label in ANNOTATION_LABELS]
    if not annotation_signals:
        raise HypnogramFormatError(
            path, "has no EDF+ annotations signal, so it holds no sleep stages")

    record_size = sum(samples) * bytes_per_sample
    f.seek(0, 2)
    available = (f.tell() - header_bytes) // record_size if record_size else 0
    complete = n_records < 0 or n_records <= available
    n_records = available if n_records < 0 else min(n_records, available)
    offsets = [sum(samples[:i]) * bytes_per_sample for i in range(n_signals)]

    annotations: list[tuple[float, float | None, str]] = []
    malformed = 0
    first_record_time: float | None = None
    for r in range(n_records):
        for k, signal in enumerate(annotation_signals):
            f.seek(header_bytes + r * record_size + offsets[signal])
            raw = f.read(samples[signal] * bytes_per_sample)
            for t, tal in enumerate(chunk for chunk in raw.split(b"\x00") if chunk):
                parsed = _parse_tal(tal)
                if parsed is None:
                    malformed += 1
                    continue
                onset, duration, texts = parsed
                if not texts:
                    if r == 0 and k == 0 and t == 0:
                        first_record_time = onset  # time-keeping TAL of the first record
                    continue
                for text in texts:
                    annotations.append((onset, duration, text))
    offset = first_record_time or 0.0
    if offset:
        annotations = [(onset - offset, duration, text) for onset, duration, text in annotations]
    recording_id = _field(head[88:168])
    return EdfAnnotations(_start(head, recording_id), file_type, annotations, malformed,
                          complete, recording_id)


def _parse_tal(tal: bytes) -> tuple[float, float | None, list[str]] | None:
    parts = tal.split(b"\x14")
    if len(parts) < 2:
        return None
    timing = parts[0].split(b"\x15")
    if len(timing) > 2 or not _ONSET.match(timing[0]):
        return None
    duration = None
    if len(timing) == 2 and timing[1]:
        if not _DURATION.match(timing[1]):
            return None
        duration = float(timing[1])
    texts = [p.decode("utf-8", errors="replace").strip() for p in parts[1:]]
    return float(timing[0]), duration, [t for t in texts if t]


def _start(head: bytes, recording_id: str) -> datetime | None:
    """Header start; EDF+ 'Startdate dd-MMM-yyyy' gives the full year when present."""
    try:
        day, month, year = (int(x) for x in _field(head[168:176]).split("."))
        hour, minute, second = (int(x) for x in _field(head[176:184]).split("."))
        year += 1900 if year >= 85 else 2000
        return datetime(_full_year(recording_id, day, month, year), month, day, hour, minute, second)
    except ValueError:
        return None


def _full_year(recording_id: str, day: int, month: int, year: int) -> int:
    words = recording_id.split()
    if len(words) >= 2 and words[0] == "Startdate":
        try:
            d, m, y = words[1].split("-")
            if m.upper() in _MONTHS and int(d) == day and _MONTHS.index(m.upper()) + 1 == month:
                return int(y)
        except ValueError:
            pass
    return year
