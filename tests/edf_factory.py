"""Writers of real EDF / EDF+ / BDF test recordings, for every test that needs one.

Two kinds of writer:

* ``write_psg_edf`` writes a well-formed file with pyedflib's ``EdfWriter`` (EDF+, EDF, BDF+ or
  BDF), from physical values in any unit, one sampling rate per channel if you like.
* ``write_raw_edf`` writes the bytes by hand (header, data records, the "EDF Annotations"
  signal). Use it for what pyedflib will not write: discontinuous EDF+D files whose record
  onsets leave gaps (``write_discontinuous_edf`` wraps it), and headers that break the spec.
  ``patch_header`` then overwrites one header field of an existing file, to make broken ones.

``quantum(path_or_range)`` gives the EDF quantisation step, to compare values read back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyedflib

DEFAULT_START = datetime(2024, 3, 1, 22, 30, 0)

_FILE_TYPES = {
    "EDF+": pyedflib.FILETYPE_EDFPLUS,
    "EDF": pyedflib.FILETYPE_EDF,
    "BDF+": pyedflib.FILETYPE_BDFPLUS,
    "BDF": pyedflib.FILETYPE_BDF,
}
EDF_DIGITAL = (-32768, 32767)
BDF_DIGITAL = (-8388608, 8388607)


def _per_channel(value, labels, name):
    if isinstance(value, Mapping):
        missing = [lab for lab in labels if lab not in value]
        if missing:
            raise ValueError(f"{name} missing for {missing}")
        return [value[lab] for lab in labels]
    return [value for _ in labels]


def _fit8(x: float) -> float:
    """A number that fits the 8-character header field unchanged (as pyedflib would write it)."""
    if float(x).is_integer():
        return int(x)
    for digits in range(6, -1, -1):
        y = round(x, digits)
        if len(repr(float(y)).rstrip("0").rstrip(".")) <= 8:
            return y
    return int(round(x))


def physical_range(values: np.ndarray) -> tuple[float, float]:
    """A header physical range that holds ``values`` and fits the 8-character fields."""
    lo, hi = float(np.min(values)), float(np.max(values))
    span = max(hi - lo, 1e-3)
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    return math.floor(lo * 1000) / 1000, math.ceil(hi * 1000) / 1000


def write_psg_edf(
    path: str | Path,
    signals: Mapping[str, np.ndarray],
    fs: Mapping[str, float] | float,
    units: Mapping[str, str] | str = "uV",
    annotations: Iterable[tuple[float, float, str]] = (),
    start: datetime = DEFAULT_START,
    *,
    file_type: str = "EDF+",
    ranges: Mapping[str, tuple[float, float]] | None = None,
    record_duration: float | None = None,
) -> Path:
    """Write ``signals`` (label -> physical values in ``units``) with pyedflib.

    ``fs`` is one rate or one per label; every signal must fill whole data records (1 s unless
    ``record_duration`` says otherwise). ``annotations`` are (onset_s, duration_s, text); they
    need an EDF+ or BDF+ ``file_type``. ``ranges`` overrides the header's physical min/max per
    label (default: the data's range plus 5 %). Returns the path.
    """
    path = Path(path)
    labels = list(signals)
    rates = [float(r) for r in _per_channel(fs, labels, "fs")]
    dims = _per_channel(units, labels, "units")
    bdf = file_type.startswith("BDF")
    dmin, dmax = BDF_DIGITAL if bdf else EDF_DIGITAL
    headers = []
    for label, rate, dim in zip(labels, rates, dims):
        data = np.asarray(signals[label], dtype=np.float64)
        lo, hi = (ranges or {}).get(label) or physical_range(data)
        headers.append({
            "label": label, "dimension": dim, "sample_frequency": rate,
            "physical_min": _fit8(lo), "physical_max": _fit8(hi),
            "digital_min": dmin, "digital_max": dmax, "transducer": "", "prefilter": "",
        })
    writer = pyedflib.EdfWriter(str(path), len(labels), file_type=_FILE_TYPES[file_type])
    try:
        writer.setSignalHeaders(headers)
        writer.setStartdatetime(start)
        if record_duration is not None:
            writer.setDatarecordDuration(record_duration)
        writer.writeSamples([np.ascontiguousarray(signals[lab], dtype=np.float64) for lab in labels])
        for onset, duration, text in annotations:
            writer.writeAnnotation(onset, duration, text)
    finally:
        writer.close()
    return path


def quantum(lo: float, hi: float, bdf: bool = False) -> float:
    """One digital step in physical units for the physical range ``lo..hi``."""
    dmin, dmax = BDF_DIGITAL if bdf else EDF_DIGITAL
    return (hi - lo) / (dmax - dmin)


# ----------------------------------------------------------------------------------------------
# Byte-level writer


@dataclass
class RawSignal:
    """One ordinary signal for ``write_raw_edf``: digital samples, shape (n_records, spr)."""

    label: str
    digital: np.ndarray
    unit: str = "uV"
    phys_min: float = -3276.8
    phys_max: float = 3276.7
    dig_min: int = -32768
    dig_max: int = 32767
    transducer: str = ""
    prefilter: str = ""

    def physical(self) -> np.ndarray:
        """The physical values a reader must return, flattened over records."""
        gain = (self.phys_max - self.phys_min) / (self.dig_max - self.dig_min)
        return (self.digital.astype(np.float64).ravel() - self.dig_min) * gain + self.phys_min


def _field(text: str | bytes, width: int) -> bytes:
    raw = text if isinstance(text, bytes) else str(text).encode("latin-1")
    if len(raw) > width:
        raise ValueError(f"{raw!r} does not fit {width} bytes")
    return raw.ljust(width, b" ")


def _num(x: float) -> str:
    text = str(int(x)) if float(x).is_integer() else repr(float(x))
    if len(text) > 8:
        raise ValueError(f"{x} does not fit an 8-character header field")
    return text


def tal(onset: float, duration: float | None = None, texts: Sequence[str] = ("",)) -> bytes:
    """One time-stamped annotation list: ``+onset[\\x15duration]\\x14text\\x14...\\x00``."""
    head = f"{onset:+.4f}".rstrip("0").rstrip(".")
    if duration is not None:
        head += "\x15" + f"{duration:.4f}".rstrip("0").rstrip(".")
    body = "".join(t + "\x14" for t in texts)
    return (head + "\x14" + body).encode("utf-8") + b"\x00"


def write_raw_edf(
    path: str | Path,
    signals: Sequence[RawSignal],
    *,
    record_duration: float = 1.0,
    start: datetime = DEFAULT_START,
    reserved: str = "",
    record_onsets: Sequence[float] | None = None,
    annotations: Iterable[tuple[float, float, str]] = (),
    bdf: bool = False,
    n_records_field: str | None = None,
) -> Path:
    """Write an EDF/BDF file byte by byte.

    With ``record_onsets`` (or ``annotations``, or ``reserved`` starting with "EDF+"/"BDF+") an
    "EDF Annotations" signal is appended whose first TAL in each record gives that record's
    onset; ``annotations`` go into the first record. ``n_records_field`` overrides the header's
    record count (e.g. to claim more records than written).
    """
    path = Path(path)
    n_records = int(signals[0].digital.shape[0]) if signals else len(record_onsets or [1])
    for s in signals:
        if s.digital.ndim != 2 or s.digital.shape[0] != n_records:
            raise ValueError(f"{s.label}: digital samples must be (n_records, spr)")
    annotations = list(annotations)
    plus = record_onsets is not None or bool(annotations) or reserved[:4] in ("EDF+", "BDF+")
    width = 3 if bdf else 2
    records_tal: list[bytes] = []
    if plus:
        onsets = list(record_onsets) if record_onsets is not None else [
            k * record_duration for k in range(n_records)]
        if len(onsets) != n_records:
            raise ValueError("one onset per record")
        for k, onset in enumerate(onsets):
            chunk = tal(onset)
            if k == 0:
                chunk += b"".join(tal(o, d, (t,)) for o, d, t in annotations)
            records_tal.append(chunk)
        tal_spr = -(-max(len(c) for c in records_tal) // width) + 2
    headers = [(s.label, s.transducer, s.unit, _num(s.phys_min), _num(s.phys_max),
                str(s.dig_min), str(s.dig_max), s.prefilter, str(s.digital.shape[1]))
               for s in signals]
    if plus:
        dmin, dmax = BDF_DIGITAL if bdf else EDF_DIGITAL
        headers.append(("BDF Annotations" if bdf else "EDF Annotations", "", "", "-1", "1",
                        str(dmin), str(dmax), "", str(tal_spr)))
    ns = len(headers)
    out = bytearray()
    out += b"\xffBIOSEMI" if bdf else _field("0", 8)
    out += _field("X X X X", 80)
    month = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
             "DEC")[start.month - 1]
    out += _field(f"Startdate {start.day:02d}-{month}-{start.year} X X X" if plus else "", 80)
    out += _field(start.strftime("%d.%m.%y"), 8) + _field(start.strftime("%H.%M.%S"), 8)
    out += _field(str(256 * (ns + 1)), 8)
    out += _field(reserved if reserved else (("BDF+C" if bdf else "EDF+C") if plus else ""), 44)
    out += _field(n_records_field if n_records_field is not None else str(n_records), 8)
    out += _field(_num(record_duration), 8)
    out += _field(str(ns), 4)
    for i, width_i in enumerate((16, 80, 8, 8, 8, 8, 8, 80, 8)):
        for h in headers:
            out += _field(h[i], width_i)
    out += b" " * (32 * ns)
    assert len(out) == 256 * (ns + 1)
    for k in range(n_records):
        for s in signals:
            out += _digital_bytes(s.digital[k], bdf)
        if plus:
            out += records_tal[k].ljust(tal_spr * width, b"\x00")
    path.write_bytes(bytes(out))
    return path


def _digital_bytes(values: np.ndarray, bdf: bool) -> bytes:
    v = np.asarray(values, dtype=np.int64)
    if not bdf:
        return v.astype("<i2").tobytes()
    u = (v & 0xFFFFFF).astype("<u4")
    return np.stack([u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()


def write_discontinuous_edf(
    path: str | Path,
    signals: Mapping[str, np.ndarray],
    fs: Mapping[str, float] | float,
    record_onsets: Sequence[float],
    *,
    record_duration: float = 1.0,
    units: Mapping[str, str] | str = "uV",
    annotations: Iterable[tuple[float, float, str]] = (),
    start: datetime = DEFAULT_START,
    bdf: bool = False,
) -> tuple[Path, dict[str, np.ndarray]]:
    """Write an EDF+D (BDF+D) file: record k of every signal starts at ``record_onsets[k]``.

    ``signals`` are physical values, ``len(record_onsets) * fs * record_duration`` each. Returns
    the path and the quantised physical values a reader must return for each label.
    """
    labels = list(signals)
    rates = _per_channel(fs, labels, "fs")
    dims = _per_channel(units, labels, "units")
    dmin, dmax = BDF_DIGITAL if bdf else EDF_DIGITAL
    raws, expected = [], {}
    for label, rate, unit in zip(labels, rates, dims):
        spr = int(round(rate * record_duration))
        data = np.asarray(signals[label], dtype=np.float64).reshape(len(record_onsets), spr)
        lo, hi = physical_range(data)
        lo, hi = _fit8(lo), _fit8(hi)
        gain = (hi - lo) / (dmax - dmin)
        digital = np.clip(np.round((data - lo) / gain + dmin), dmin, dmax).astype(np.int64)
        raw = RawSignal(label, digital, unit, lo, hi, dmin, dmax)
        raws.append(raw)
        expected[label] = raw.physical()
    p = write_raw_edf(path, raws, record_duration=record_duration, start=start,
                      reserved="BDF+D" if bdf else "EDF+D", record_onsets=record_onsets,
                      annotations=annotations, bdf=bdf)
    return p, expected


# ----------------------------------------------------------------------------------------------
# Header surgery

_GLOBAL_FIELDS = {  # name -> (offset, width)
    "version": (0, 8), "patient": (8, 80), "recording": (88, 80), "start_date": (168, 8),
    "start_time": (176, 8), "header_bytes": (184, 8), "reserved": (192, 44),
    "n_records": (236, 8), "record_duration": (244, 8), "ns": (252, 4),
}
_SIGNAL_FIELDS = ("label", 16), ("transducer", 80), ("unit", 8), ("phys_min", 8), (
    "phys_max", 8), ("dig_min", 8), ("dig_max", 8), ("prefilter", 80), ("spr", 8), ("sig_reserved", 32)


def header_field_span(ns: int, field: str, signal: int | None = None) -> tuple[int, int]:
    """(offset, width) of a header field; per-signal fields need ``signal``."""
    if field in _GLOBAL_FIELDS:
        return _GLOBAL_FIELDS[field]
    offset = 256
    for name, width in _SIGNAL_FIELDS:
        if name == field:
            if signal is None:
                raise ValueError(f"{field} needs a signal index")
            return offset + signal * width, width
        offset += width * ns
    raise KeyError(field)


def patch_header(path: str | Path, field: str, value: str | bytes, signal: int | None = None) -> Path:
    """Overwrite one header field (padded with spaces) of an existing EDF/BDF file in place."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    ns = int(data[252:256].decode("ascii").strip())
    offset, width = header_field_span(ns, field, signal)
    raw = value if isinstance(value, bytes) else value.encode("latin-1")
    data[offset:offset + width] = raw[:width].ljust(width, b" ")
    path.write_bytes(bytes(data))
    return path


def sine(fs: float, seconds: float, freq: float = 1.0, amplitude: float = 50.0,
         phase: float = 0.0) -> np.ndarray:
    """A test sine of ``seconds`` at ``fs``: values are known exactly at every sample."""
    t = np.arange(int(round(fs * seconds))) / fs
    return amplitude * np.sin(2 * np.pi * freq * t + phase)
