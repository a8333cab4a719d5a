"""Sample readers behind ``Recording``: pyedflib, MNE, or our own numpy reader.

Each reads, for one ordinary signal (numbered among the non-annotation signals), a run of its
*stored* samples (record after record, as in the file, ignoring time stamps) as physical
values in the header's unit. ``Recording`` places those runs on the timeline.

Which one reads a file (``open_source``):

1. pyedflib (edflib): fast and strict. It refuses EDF+D outright ("The file is discontinuous
   and cannot be read") and refuses many real-world quirks: non-ASCII labels or units ("µV" in
   Latin-1), start dates like "1.3.24" or "22:30:00", swapped or out-of-range digital min/max,
   a lower-case "startdate" in the EDF+ recording field, "-1" records.
2. MNE (``read_raw_edf`` / ``read_raw_bdf``, preload=False) for what pyedflib refuses. Only
   when every signal has the same rate: MNE resamples slower signals (FFT) to the fastest rate,
   which would change the values; only for ".edf"/".bdf" names (MNE refuses others). MNE
   returns volts for "uV"/"µV"/"mV" and the physical value for any other unit.
3. ``NumpySource``: reads the records itself. Always used for EDF+D/BDF+D (MNE reads those as
   if continuous) and for anything the libraries refuse that ``read_header`` accepted.

All three open the file read-only and read only what is asked.
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pyedflib

from .edf_header import EdfHeader

log = logging.getLogger(__name__)


class SourceRefused(Exception):
    """This reader cannot read this file (the next one is tried)."""


class NumpySource:
    name = "numpy"
    _CHUNK_BYTES = 8 * 1024 * 1024

    def __init__(self, header: EdfHeader):
        self._header = header
        self._signals = header.ordinary
        self._file = open(header.path, "rb")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def read(self, index: int, start: int, n: int) -> np.ndarray:
        h, sig = self._header, self._signals[index]
        spr, width = sig.samples_per_record, h.sample_bytes
        out = np.empty(n, dtype=np.float64)
        done = 0
        # Read whole records in chunks of at most _CHUNK_BYTES, keep this signal's bytes.
        per_chunk = max(1, self._CHUNK_BYTES // h.record_bytes)
        while done < n:
            first = start + done
            rec = first // spr
            rec_last = (start + n - 1) // spr
            count = min(rec_last - rec + 1, per_chunk)
            raw = self._read_records(rec, count)
            lo = sig.byte_offset
            block = raw.reshape(count, h.record_bytes)[:, lo:lo + spr * width]
            digital = _decode(np.ascontiguousarray(block), h.is_bdf).ravel()
            skip = first - rec * spr
            take = min(n - done, digital.size - skip)
            out[done:done + take] = digital[skip:skip + take]
            done += take
        out *= sig.gain
        out += sig.offset
        return out

    def _read_records(self, record: int, count: int) -> np.ndarray:
        size = count * self._header.record_bytes
        offset = self._header.record_offset(record)
        with self._lock:
            if hasattr(os, "pread"):
                raw = os.pread(self._file.fileno(), size, offset)
            else:  # pragma: no cover - Windows
                self._file.seek(offset)
                raw = self._file.read(size)
        if len(raw) != size:
            raise OSError(f"short read at byte {offset}")
        return np.frombuffer(raw, dtype=np.uint8)

    def close(self) -> None:
        self._file.close()


def _decode(block: np.ndarray, bdf: bool) -> np.ndarray:
    """Little-endian int16 (EDF) or int24 (BDF) samples from raw bytes (rows kept)."""
    if not bdf:
        return block.view("<i2").astype(np.int32)
    b = block.reshape(block.shape[0], -1, 3).astype(np.int32)
    value = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    return np.where(value >= 1 << 23, value - (1 << 24), value).reshape(block.shape[0], -1)


# Paths (as given to edflib, which compares the strings) this process has open in pyedflib.
# edflib refuses a second open of the same path, and pyedflib (0.1.42) then closes the FIRST
# reader's handle: its reads silently become zeros. So a second open never reaches pyedflib.
_PYEDFLIB_OPEN: set[str] = set()
_PYEDFLIB_OPEN_LOCK = threading.Lock()


class PyEdflibSource:
    name = "pyedflib"

    def __init__(self, header: EdfHeader):
        if header.discontinuous:
            raise SourceRefused("pyedflib does not read EDF+D")

        self._key = str(header.path)
        with _PYEDFLIB_OPEN_LOCK:
            if self._key in _PYEDFLIB_OPEN:
                raise SourceRefused("already open in pyedflib in this process")
            try:
                # Annotations are read by edf_header (cheaper, and works for files pyedflib refuses).
                # The file size was checked by read_header; never use REPAIR_FILE_SIZE_IF_WRONG.
                self._reader = pyedflib.EdfReader(self._key, pyedflib.DO_NOT_READ_ANNOTATIONS,
                                                  pyedflib.DO_NOT_CHECK_FILE_SIZE)
            except Exception as exc:  # OSError with edflib's reason
                raise SourceRefused(str(exc)) from None
            _PYEDFLIB_OPEN.add(self._key)
        try:
            self._index = _library_index(header, self._reader.getSignalLabels())
            counts = self._reader.getNSamples()
            for mine, theirs in zip(header.ordinary, self._index):
                if counts[theirs] != mine.samples_per_record * header.n_records:
                    raise SourceRefused(f"pyedflib sees {counts[theirs]} samples in {mine.label!r}")
        except Exception:
            self._close_reader()
            raise
        self._lock = threading.Lock()

    def read(self, index: int, start: int, n: int) -> np.ndarray:
        with self._lock:
            data = self._reader.readSignal(self._index[index], start, n)
        if data.size != n:
            raise OSError(f"pyedflib returned {data.size} of {n} samples")
        return data

    def _close_reader(self) -> None:
        with _PYEDFLIB_OPEN_LOCK:
            self._reader.close()
            _PYEDFLIB_OPEN.discard(self._key)

    def close(self) -> None:
        self._close_reader()


def _library_index(header: EdfHeader, labels: list[str]) -> list[int]:
    """Where each ordinary signal sits in a library's channel list (with or without the
    annotation signals, which plain-EDF readers list as ordinary ones)."""
    ordinary = header.ordinary
    if len(labels) == len(ordinary):
        index = list(range(len(ordinary)))
    elif len(labels) == len(header.signals):
        index = [s.number for s in ordinary]
    else:
        raise SourceRefused(f"library lists {len(labels)} channels, the header {len(ordinary)}")
    for sig, i in zip(ordinary, index):
        if labels[i].strip() != sig.label:
            raise SourceRefused(f"library label {labels[i]!r} is not {sig.label!r}")
    return index


def mne_volt_factor(unit_latin1: str) -> float:
    """What MNE's EDF reader multiplies physical values by (it knows only these spellings)."""
    if unit_latin1 in ("\u03bcV", "\u00b5V", "\x83\xcaV", "uV"):
        return 1e-6
    if unit_latin1 == "mV":
        return 1e-3
    return 1.0


class MneSource:
    name = "mne"

    def __init__(self, header: EdfHeader):
        suffix = header.path.suffix.lower()
        if suffix not in (".edf", ".bdf") or (suffix == ".bdf") != header.is_bdf:
            raise SourceRefused(f"MNE reads only .edf/.bdf names, not {suffix!r}")
        if header.discontinuous:
            raise SourceRefused("MNE reads EDF+D as if continuous")
        rates = {s.samples_per_record for s in header.ordinary}
        if len(rates) > 1:
            raise SourceRefused("MNE would resample the slower signals")
        try:
            import mne  # late: mne takes seconds to import and is needed only here

            reader = mne.io.read_raw_bdf if header.is_bdf else mne.io.read_raw_edf
            self._raw = reader(str(header.path), preload=False, infer_types=False,
                               encoding="latin1", verbose="error")
        except Exception as exc:
            raise SourceRefused(f"{type(exc).__name__}: {exc}") from None
        if len(self._raw.ch_names) != len(header.ordinary):
            raise SourceRefused("MNE lists a different number of channels")
        expected = header.ordinary[0].samples_per_record * header.n_records
        if self._raw.n_times < expected:
            raise SourceRefused(f"MNE sees {self._raw.n_times} samples, the header {expected}")
        self._factors = [mne_volt_factor(s.unit_latin1) for s in header.ordinary]
        self._lock = threading.Lock()

    def read(self, index: int, start: int, n: int) -> np.ndarray:
        with self._lock:
            data = self._raw.get_data(picks=[index], start=start, stop=start + n)[0]
        if data.size != n:
            raise OSError(f"MNE returned {data.size} of {n} samples")
        return data / self._factors[index]

    def close(self) -> None:
        self._raw.close()


def open_source(header: EdfHeader) -> tuple[object, list[str]]:
    """The first reader that accepts the file, and why the ones before it refused."""
    refusals: list[str] = []
    for kind in (PyEdflibSource, MneSource):
        try:
            return kind(header), refusals
        except Exception as why:  # SourceRefused, or anything a library throws at an odd file
            refusals.append(f"{kind.name}: {why}")
            log.info("%s: %s refused: %s", header.path, kind.name, why)
    return NumpySource(header), refusals
