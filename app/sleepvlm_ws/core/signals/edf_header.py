"""The EDF / BDF header, read and checked by hand, and the EDF+ annotation signal (TALs).

Every recording is first read here, whatever library later reads its samples: the header is
small (256 bytes + 256 per signal), and checking it ourselves gives one clear line for each
way real files break (see ``read_header``). Nothing here reads the signal samples.

EDF+ facts used (edfplus.info):

* ``reserved`` starts with "EDF+C" (continuous) or "EDF+D" (discontinuous); BDF+ uses "BDF+C"
  / "BDF+D" (some writers put "EDF+" in BDF files: both accepted).
* Signals labelled "EDF Annotations" (BDF+: "BDF Annotations") hold text, not samples: a run of
  TALs ``+onset[\\x15duration]\\x14text\\x14...\\x14\\x00`` in each data record.
* The first TAL of the first annotation signal of every record is empty and time-stamps that
  record: seconds from the header's start date/time to the record's start. In EDF+D this is
  the only way to know where a record belongs on the timeline.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ...errors import RecordingError

ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
MAX_SIGNALS = 4096  # far beyond any PSG; protects against reading garbage as a header

# Physical dimension -> factor to microvolts. Keys are normalised by ``_unit_key``.
_UV_FACTORS = {
    "v": 1e6, "volt": 1e6, "volts": 1e6,
    "mv": 1e3, "millivolt": 1e3, "millivolts": 1e3,
    "uv": 1.0, "microv": 1.0, "microvolt": 1.0, "microvolts": 1.0,
    "nv": 1e-3, "nanovolt": 1e-3, "nanovolts": 1e-3,
}


def _unit_key(unit: str) -> str:
    key = unit.strip().replace("\u00b5", "u").replace("\u03bc", "u").lower()
    return "".join(key.split())


def microvolt_factor(unit: str) -> float:
    """Multiply values in ``unit`` by this to get microvolts; 1.0 for unknown/non-voltage units."""
    return _UV_FACTORS.get(_unit_key(unit), 1.0)


def is_voltage_unit(unit: str) -> bool:
    return _unit_key(unit) in _UV_FACTORS


@dataclass(frozen=True)
class SignalHeader:
    """One signal of the header, numbered as in the file (annotation signals included)."""

    number: int
    label: str
    unit: str
    unit_latin1: str          # the unit decoded as Latin-1 (as MNE decodes it)
    phys_min: float
    phys_max: float
    dig_min: int
    dig_max: int
    samples_per_record: int
    byte_offset: int          # offset of this signal's samples inside one data record
    is_annotation: bool

    @property
    def gain(self) -> float:
        return (self.phys_max - self.phys_min) / (self.dig_max - self.dig_min)

    @property
    def offset(self) -> float:
        """physical = digital * gain + offset."""
        return self.phys_min - self.dig_min * self.gain


@dataclass
class EdfHeader:
    path: Path
    file_size: int
    is_bdf: bool
    plus: str                 # "", "C" or "D"
    start: datetime | None
    header_bytes: int
    n_records: int
    record_duration: float
    signals: list[SignalHeader] = field(default_factory=list)
    record_bytes: int = 0

    @property
    def sample_bytes(self) -> int:
        return 3 if self.is_bdf else 2

    @property
    def file_type(self) -> str:
        base = "BDF" if self.is_bdf else "EDF"
        return f"{base}+{self.plus}" if self.plus else base

    @property
    def ordinary(self) -> list[SignalHeader]:
        return [s for s in self.signals if not s.is_annotation]

    @property
    def annotation_signals(self) -> list[SignalHeader]:
        return [s for s in self.signals if s.is_annotation]

    @property
    def discontinuous(self) -> bool:
        return self.plus == "D"

    def record_offset(self, record: int) -> int:
        return self.header_bytes + record * self.record_bytes


# ----------------------------------------------------------------------------------------------
# Header


def _text(raw: bytes) -> str:
    """A header text field: UTF-8 if it is valid UTF-8, else Latin-1; padding stripped."""
    raw = raw.rstrip(b" \x00").lstrip(b" ")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _number(path: Path, name: str, raw: bytes) -> float:
    text = raw.decode("latin-1").strip(" \x00")
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        raise RecordingError(path, f"header: {name} is not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise RecordingError(path, f"header: {name} is not a finite number: {text!r}")
    return value


def _integer(path: Path, name: str, raw: bytes) -> int:
    value = _number(path, name, raw)
    if not value.is_integer():
        raise RecordingError(path, f"header: {name} is not a whole number: {value:g}")
    return int(value)


def _start(date: bytes, time: bytes, recording: str) -> datetime | None:
    """Start date/time from 'dd.mm.yy' 'hh.mm.ss' (any separator); EDF+ gives the 4-digit year."""
    try:
        d, m, y = (int(x) for x in re.split(r"[.:/\-]", date.decode("latin-1").strip()))
        hh, mm, ss = (int(x) for x in re.split(r"[.:/\-]", time.decode("latin-1").strip()))
    except ValueError:
        return None
    year = 1900 + y if 85 <= y <= 99 else 2000 + y
    found = re.match(r"Startdate (\d\d)-([A-Za-z]{3})-(\d{4})", recording)
    if found and found.group(1) == f"{d:02d}":
        year = int(found.group(3))
    try:
        return datetime(year, m, d, hh, mm, ss)
    except ValueError:
        return None


def read_header(path: str | Path) -> EdfHeader:
    """Read and check an EDF/BDF header; every problem becomes a one-line ``RecordingError``."""
    path = Path(path)
    if not path.exists():
        raise RecordingError(path, "file not found")
    if path.is_dir():
        raise RecordingError(path, "is a folder, not an EDF/BDF recording")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            fixed = f.read(256)
            if size == 0:
                raise RecordingError(path, "the file is empty")
            if len(fixed) < 256:
                raise RecordingError(path, f"too short for an EDF/BDF header ({size} bytes)")
            is_bdf = fixed[0:8] == b"\xffBIOSEMI"
            if not is_bdf and fixed[0:8].rstrip(b" ") != b"0":
                raise RecordingError(path, "not an EDF or BDF file (it does not begin with "
                                     "the EDF or BDF version field)")
            ns = _integer(path, "number of signals", fixed[252:256])
            if ns < 1 or ns > MAX_SIGNALS:
                raise RecordingError(path, f"header gives an impossible number of signals ({ns})")
            rest = f.read(256 * ns)
    except OSError as exc:
        raise RecordingError(path, f"cannot be read ({exc.strerror or exc})") from None
    if len(rest) < 256 * ns:
        raise RecordingError(path, f"truncated header: {ns} signals need {256 * (ns + 1)} "
                             f"header bytes but the file has {size}")
    header_bytes = _integer(path, "number of bytes in header", fixed[184:192])
    if header_bytes != 256 * (ns + 1):
        raise RecordingError(path, f"header size field says {header_bytes} bytes but "
                             f"{ns} signals need {256 * (ns + 1)}")
    reserved = fixed[192:236].decode("latin-1").strip()
    plus = reserved[4] if reserved[:4] in ("EDF+", "BDF+") and reserved[4:5] in ("C", "D") else ""
    n_records = _integer(path, "number of data records", fixed[236:244])
    duration = _number(path, "duration of a data record", fixed[244:252])
    start = _start(fixed[168:176], fixed[176:184], fixed[88:168].decode("latin-1"))

    def column(width: int, index: int) -> list[bytes]:
        base = sum(w for w in (16, 80, 8, 8, 8, 8, 8, 80, 8)[:index]) * ns
        return [rest[base + i * width: base + (i + 1) * width] for i in range(ns)]

    labels = [_text(b) for b in column(16, 0)]
    units_raw = column(8, 2)
    pmin, pmax, dmin, dmax, spr = (column(8, k) for k in (3, 4, 5, 6, 8))
    header = EdfHeader(path, size, is_bdf, plus, start, header_bytes, n_records, duration)
    offset = 0
    sample_bytes = header.sample_bytes
    for i in range(ns):
        is_annotation = labels[i] in ANNOTATION_LABELS
        n = _integer(path, f"samples per record of signal {i + 1}", spr[i])
        if n < 1 or (n > 10_000_000):
            raise RecordingError(path, f"signal {labels[i]!r}: impossible number of samples per "
                                 f"data record ({n})")
        if is_annotation:
            p0, p1, d0, d1 = -1.0, 1.0, -32768, 32767
        else:
            name = f"signal {labels[i]!r}"
            p0 = _number(path, f"physical minimum of {name}", pmin[i])
            p1 = _number(path, f"physical maximum of {name}", pmax[i])
            d0 = _integer(path, f"digital minimum of {name}", dmin[i])
            d1 = _integer(path, f"digital maximum of {name}", dmax[i])
            if p0 == p1:
                raise RecordingError(path, f"{name}: physical minimum equals physical maximum "
                                     f"({p0:g}), its values cannot be scaled")
            if d0 == d1:
                raise RecordingError(path, f"{name}: digital minimum equals digital maximum "
                                     f"({d0}), its values cannot be scaled")
        header.signals.append(SignalHeader(
            i, labels[i], _text(units_raw[i]), units_raw[i].decode("latin-1").strip(),
            p0, p1, d0, d1, n, offset, is_annotation))
        offset += n * sample_bytes
    header.record_bytes = offset
    _check_records(header)
    return header


def _check_records(header: EdfHeader) -> None:
    path = header.path
    data_bytes = header.file_size - header.header_bytes
    available = data_bytes // header.record_bytes
    if header.n_records == -1:  # allowed while recording: count the records in the file
        header.n_records = available
    if header.n_records == 0:
        raise RecordingError(path, "holds no data records")
    if header.n_records < 0:
        raise RecordingError(path, f"header gives a negative number of data records "
                             f"({header.n_records})")
    if header.n_records > available:
        raise RecordingError(path, f"truncated: the header promises {header.n_records} data "
                             f"records but the file holds only {available}")
    if header.ordinary:
        if header.record_duration <= 0:
            raise RecordingError(path, "the duration of a data record must be positive, the "
                                 f"header says {header.record_duration:g}")
        if header.plus == "D" and not header.annotation_signals:
            raise RecordingError(path, "EDF+D file without an 'EDF Annotations' signal: its "
                                 "records cannot be placed on the timeline")


# ----------------------------------------------------------------------------------------------
# Annotation signals (TALs)


@dataclass(frozen=True)
class Tal:
    onset: float              # seconds after the header's start date/time
    duration: float           # 0 when absent
    texts: tuple[str, ...]


_ONSET = re.compile(rb"^[+-]\d+(\.\d*)?$")
_DURATION = re.compile(rb"^\d+(\.\d*)?$")


def parse_tals(raw: bytes) -> list[Tal]:
    """All well-formed TALs in one record's annotation bytes (malformed ones are skipped)."""
    tals = []
    for chunk in raw.split(b"\x00"):
        if b"\x14" not in chunk:
            continue
        stamp, _, body = chunk.partition(b"\x14")
        onset_raw, _, duration_raw = stamp.partition(b"\x15")
        if not _ONSET.match(onset_raw) or (duration_raw and not _DURATION.match(duration_raw)):
            continue
        texts = tuple(t.decode("utf-8", errors="replace").strip() for t in body.split(b"\x14"))
        tals.append(Tal(float(onset_raw), float(duration_raw) if duration_raw else 0.0,
                        tuple(t for t in texts if t)))
    return tals


def _pread(f, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(f.fileno(), size, offset)
    f.seek(offset)
    return f.read(size)


def record_stamp(raw: bytes) -> float | None:
    """The time stamp of a record: the onset of the first TAL of its first annotation signal."""
    stamp = raw.lstrip(b"\x00").partition(b"\x14")[0].partition(b"\x15")[0]
    if _ONSET.match(stamp):
        return float(stamp)
    return None


@dataclass
class AnnotationScan:
    """What the annotation signals hold: record time stamps and the annotations themselves."""

    stamps: list[float | None]                       # per record (None: no valid stamp)
    tals: list[Tal]                                  # every non-empty annotation, file order


def scan_annotations(header: EdfHeader, records: range | None = None) -> AnnotationScan:
    """Read the annotation signals of ``records`` (default all), a few bytes per record."""
    signals = header.annotation_signals
    records = range(header.n_records) if records is None else records
    stamps: list[float | None] = []
    tals: list[Tal] = []
    if not signals:
        return AnnotationScan([None] * len(records), [])
    sample_bytes = header.sample_bytes
    try:
        with open(header.path, "rb") as f:
            for k in records:
                base = header.record_offset(k)
                for j, sig in enumerate(signals):
                    raw = _pread(f, sig.samples_per_record * sample_bytes, base + sig.byte_offset)
                    if j == 0:
                        stamps.append(record_stamp(raw))
                    tals.extend(t for t in parse_tals(raw) if t.texts)
    except OSError as exc:
        raise RecordingError(header.path, f"cannot be read ({exc.strerror or exc})") from None
    return AnnotationScan(stamps, tals)
