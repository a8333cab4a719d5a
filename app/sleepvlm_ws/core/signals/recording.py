"""Recording: a read-only, lazily read EDF / EDF+ / BDF / BDF+ file.

``Recording.open(path)`` checks the header (``edf_header.read_header``), then picks a sample
reader (``edf_sources.open_source``: pyedflib, else MNE, else our own numpy reader) and reads
nothing else but the first record's time stamp. ``read(channel, start_s, stop_s)`` reads only
the asked window, as float32 microvolts.

The timeline: second 0 is the start of the first data record (``start`` is the header's start
date/time plus an EDF+ sub-second offset). In EDF+D/BDF+D files each data record is placed at
its own time stamp (the first TAL of the record's annotation signal); time between records is a
gap and reads as NaN, as does anything before 0 or after ``duration_s``. A channel's sample
``i`` lies at ``i / fs`` seconds; ``read`` returns samples ``round(start_s*fs)`` up to (not
including) ``round(stop_s*fs)``.

Channels are numbered among the signal channels (annotation signals excluded). Labels need not
be unique; ``channel(label)`` gives the first with that label, others are reached by index.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from ...errors import RecordingError
from ..base.stages import epoch_count
from .edf_header import EdfHeader, microvolt_factor, read_header, scan_annotations
from .edf_sources import open_source


@dataclass(frozen=True)
class Channel:
    index: int          # index among the file's signal channels (annotation channels excluded)
    label: str          # label as in the header, stripped
    fs: float           # samples per second
    unit: str           # physical dimension as in the header
    to_uv: float        # multiply physical values by this to get microvolts (1.0 if unknown/non-voltage)


@dataclass(frozen=True)
class Annotation:
    onset_s: float
    duration_s: float
    text: str


@dataclass(frozen=True)
class _Runs:
    """Where a channel's stored samples lie on the timeline: run k holds stored samples
    ``stored[k] ...`` at timeline samples ``starts[k] ... starts[k] + lengths[k]``."""

    starts: np.ndarray
    stored: np.ndarray
    lengths: np.ndarray


class Recording:
    """Open with ``Recording.open(path)``; read with ``read(channel, start_s, stop_s)``."""

    path: Path
    channels: list[Channel]
    start: datetime | None
    duration_s: float         # continuous timeline length (EDF+D: to the end of the last record)
    file_type: str            # "EDF", "EDF+C", "EDF+D", "BDF", "BDF+C", "BDF+D"
    backend: str              # "pyedflib", "mne" or "numpy" (our own reader: EDF+D, odd files)

    def __init__(self, header: EdfHeader, source, record_onsets: np.ndarray | None,
                 first_stamp: float, annotations: list[Annotation] | None):
        self._header = header
        self._source = source
        self._closed = False
        self._lock = threading.Lock()
        self._record_onsets = record_onsets      # seconds on the timeline; None: continuous
        self._first_stamp = first_stamp
        self._annotations = annotations
        self._runs: dict[int, _Runs] = {}
        self.path = header.path.absolute()
        self.file_type = header.file_type
        self.backend = source.name
        self.start = None if header.start is None else header.start + timedelta(seconds=first_stamp)
        dur = header.record_duration
        self.channels = [
            Channel(i, s.label, s.samples_per_record / dur, s.unit, microvolt_factor(s.unit))
            for i, s in enumerate(header.ordinary)]
        if record_onsets is None:
            self.duration_s = header.n_records * dur
        else:
            self.duration_s = float(record_onsets.max()) + dur

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> "Recording":
        """Open an EDF / EDF+ / BDF / BDF+ file read-only; only the header and time stamps are read.

        Parameters
        ----------
        path : str or Path
            The recording file.

        Returns
        -------
        Recording
            Open; the caller closes it (or uses it as a context manager).

        Raises
        ------
        RecordingError
            One line naming the file: missing, unreadable, a bad header, or annotations only.
        """
        header = read_header(path)
        if not header.ordinary:
            raise RecordingError(header.path, "holds annotations only, no signals (a hypnogram "
                                 "file? import it into a study instead)")
        record_onsets, annotations, first = None, None, 0.0
        if header.annotation_signals:
            records = None if header.discontinuous else range(1)
            scan = scan_annotations(header, records)
            stamps = [t for t in scan.stamps if t is not None]
            # second 0: the first record (EDF+D: the earliest, should records be out of order)
            first = (min(stamps) if header.discontinuous else scan.stamps[0]) if stamps else 0.0
            if header.discontinuous:
                record_onsets = _place_records(scan.stamps, header.record_duration) - first
                annotations = _annotations(scan.tals, first)
        try:
            source, _ = open_source(header)
        except OSError as exc:
            raise RecordingError(header.path, f"cannot be read ({exc.strerror or exc})") from None
        return cls(header, source, record_onsets, first, annotations)

    # -- facts --------------------------------------------------------------------------------

    @property
    def n_epochs(self) -> int:
        return epoch_count(self.duration_s)

    @property
    def annotations(self) -> list[Annotation]:
        """EDF+ annotations (onsets on the timeline), read on first use."""
        if self._annotations is None:
            scan = scan_annotations(self._header)
            self._annotations = _annotations(scan.tals, self._first_stamp)
        return self._annotations

    def channel(self, label: str) -> Channel:
        """The first channel labelled ``label`` (exact, else ignoring case and spaces).

        Parameters
        ----------
        label : str
            A channel label, e.g. ``"EEG Fpz-Cz"``.

        Returns
        -------
        Channel

        Raises
        ------
        RecordingError
            When no channel has that label.
        """
        for ch in self.channels:
            if ch.label == label:
                return ch
        key = _loose(label)
        for ch in self.channels:
            if _loose(ch.label) == key:
                return ch
        raise RecordingError(self.path, f"has no channel labelled {label!r}")

    def fingerprint(self) -> str:
        """sha256 of the file size and the header bytes: identifies the file for a study."""
        digest = hashlib.sha256(f"{self._header.file_size}\n".encode())
        try:
            with open(self.path, "rb") as f:
                digest.update(f.read(self._header.header_bytes))
        except OSError as exc:
            raise RecordingError(self.path, f"cannot be read ({exc.strerror or exc})") from None
        return digest.hexdigest()

    def info_dict(self) -> dict:
        """JSON-able summary for ``sleepvlm-ws info --json``."""
        return {
            "path": str(self.path),
            "file_type": self.file_type,
            "backend": self.backend,
            "start": None if self.start is None else self.start.isoformat(),
            "duration_s": self.duration_s,
            "n_epochs": self.n_epochs,
            "channels": [{"label": c.label, "fs": c.fs, "unit": c.unit} for c in self.channels],
            "n_annotations": len(self.annotations),
        }

    # -- reading ------------------------------------------------------------------------------

    def read(self, channel: int | str, start_s: float, stop_s: float) -> np.ndarray:
        """float32 microvolts on the continuous timeline; samples outside data (gaps) are NaN.

        Parameters
        ----------
        channel : int, str or Channel
            Channel index among the signal channels, a label (see :meth:`channel`) or a Channel.
        start_s, stop_s : float
            The window in seconds on the timeline; samples ``round(start_s * fs)`` up to (not
            including) ``round(stop_s * fs)``.

        Returns
        -------
        numpy.ndarray
            float32, one value per sample of the window (empty when ``stop_s <= start_s``).

        Raises
        ------
        ValueError
            When the window is not finite.
        RecordingError
            For an unknown channel, a closed recording, or a reader failure.
        """
        ch = self._resolve(channel)
        if not (np.isfinite(start_s) and np.isfinite(stop_s)):
            raise ValueError(f"read window must be finite, got {start_s}..{stop_s}")
        first, last = int(round(start_s * ch.fs)), int(round(stop_s * ch.fs))
        out = np.full(max(last - first, 0), np.nan, dtype=np.float32)
        if out.size == 0:
            return out
        runs = self._runs_for(ch)
        ends = runs.starts + runs.lengths
        for k in np.flatnonzero((runs.starts < last) & (ends > first)):
            a, b = max(first, int(runs.starts[k])), min(last, int(ends[k]))
            stored = int(runs.stored[k]) + a - int(runs.starts[k])
            with self._lock:
                if self._closed:
                    raise RecordingError(self.path, "is closed")
                try:
                    values = self._source.read(ch.index, stored, b - a)
                except Exception as exc:  # any reader failure is a bad file, not a crash
                    raise RecordingError(self.path, f"cannot read {ch.label!r} at "
                                         f"{a / ch.fs:g} s ({type(exc).__name__}: {exc})") from None
            out[a - first:b - first] = values * ch.to_uv
        return out

    def _resolve(self, channel: int | str) -> Channel:
        if isinstance(channel, Channel):
            return self.channels[channel.index]
        if isinstance(channel, (int, np.integer)):
            if not 0 <= channel < len(self.channels):
                raise RecordingError(self.path, f"has no channel number {channel} "
                                     f"(it has {len(self.channels)})")
            return self.channels[int(channel)]
        return self.channel(str(channel))

    def _runs_for(self, ch: Channel) -> _Runs:
        spr = self._header.ordinary[ch.index].samples_per_record
        runs = self._runs.get(spr)
        if runs is None:
            runs = self._runs[spr] = _build_runs(self._record_onsets, self._header.n_records,
                                                 spr, ch.fs)
        return runs

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._source.close()

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Recording({str(self.path)!r}, {self.file_type}, {len(self.channels)} channels, "
                f"{self.duration_s:g} s, {self.backend})")


def _loose(label: str) -> str:
    return "".join(label.split()).casefold()


def _place_records(stamps: list[float | None], duration: float) -> np.ndarray:
    """Record onsets from their time stamps; a record without one follows the one before."""
    onsets = np.empty(len(stamps), dtype=np.float64)
    following = 0.0
    for k, stamp in enumerate(stamps):
        onsets[k] = stamp if stamp is not None else following
        following = onsets[k] + duration
    return onsets


def _build_runs(onsets: np.ndarray | None, n_records: int, spr: int, fs: float) -> _Runs:
    """Merge records that follow each other without a gap into runs of stored samples."""
    if onsets is None:
        one = np.array([0], dtype=np.int64)
        return _Runs(one, one.copy(), np.array([n_records * spr], dtype=np.int64))
    order = np.argsort(onsets, kind="stable")
    at = np.round(onsets[order] * fs).astype(np.int64)
    stored = order.astype(np.int64) * spr
    # A record continues the run when it starts where the previous one ended, in time and in
    # the file.
    joins = np.zeros(len(at), dtype=bool)
    joins[1:] = (at[1:] == at[:-1] + spr) & (stored[1:] == stored[:-1] + spr)
    heads = np.flatnonzero(~joins)
    lengths = np.diff(np.append(heads, len(at))) * spr
    return _Runs(at[heads], stored[heads], lengths.astype(np.int64))


def _annotations(tals, first_stamp: float) -> list[Annotation]:
    notes = [Annotation(t.onset - first_stamp, t.duration, text) for t in tals for text in t.texts]
    notes.sort(key=lambda a: a.onset_s)
    return notes

