"""Evidence for the epochs on screen, measured on demand and kept per epoch (no Qt).

The whole-night ``measure_recording`` takes seconds; the technologist needs the epoch on
screen now. ``EvidenceCache.get(epoch)`` reads every role over the epoch and ``CONTEXT_EPOCHS``
epochs either side, runs the same ``measure_night`` on that window and keeps the middle
epoch's ``EpochEvidence`` (with the previous epoch's late spindles / K complexes, for N2.1).
Each epoch is measured from its own centred window, so the result does not depend on the
order the technologist pages in.

Two measurements are relative to the night: the chin level (``chin_relative``: 0 is the
night's 5th percentile of per-epoch chin RMS, 1 its 95th) is rescaled with the whole night's
chin RMS, read once on first use; the spindle threshold (x the median sigma envelope) is taken
over the window rather than the night (``benchmarks/bench_detectors.py`` reports how often the
two agree).

``EpochFindings.events()`` lists what the waveform view draws: detected spindles, K complexes,
slow waves, REMs and alpha stretches, in seconds from the recording's start, each with the row
(role) it belongs to and a short description.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from ...base.stages import EPOCH_SECONDS
from ...signals.montage import Montage, read_role
from . import detectors as det
from .measures import EpochEvidence, measure_night

CONTEXT_EPOCHS = 2          # epochs of signal either side of the one measured
REM_HALF_WIDTH_S = 0.25     # a REM is drawn this far either side of its steepest point
EVENT_KINDS = ("spindle", "k_complex", "slow_wave", "rem", "alpha")
KIND_TITLES = {"spindle": "Sleep spindles", "k_complex": "K complexes", "slow_wave": "Slow waves",
               "rem": "Rapid eye movements", "alpha": "Alpha rhythm"}


@dataclass(frozen=True)
class EvidenceEvent:
    """One detected waveform, to draw on the waveform view's ``role`` row."""

    kind: str          # one of EVENT_KINDS
    role: str
    start_s: float     # seconds from the recording's start
    stop_s: float
    text: str


@dataclass(frozen=True)
class EpochFindings:
    """An epoch's measurements plus the 1-s windows where O2-M1 alpha dominated."""

    evidence: EpochEvidence
    alpha_seconds: tuple[int, ...] = ()   # seconds from the epoch's onset

    @property
    def onset_s(self) -> float:
        return self.evidence.index * EPOCH_SECONDS

    def events(self) -> list[EvidenceEvent]:
        return epoch_events(self.evidence, self.alpha_seconds)


def epoch_events(ev: EpochEvidence, alpha_seconds=()) -> list[EvidenceEvent]:
    """What the overlays draw for one epoch (times from the recording's start)."""
    t0 = ev.index * EPOCH_SECONDS
    out: list[EvidenceEvent] = []
    for role, on, dur, freq, amp in ev.spindles:
        out.append(EvidenceEvent("spindle", role, t0 + on, t0 + on + dur,
                                 f"Sleep spindle on {role} at {on:.1f} s: {freq:.1f} Hz, "
                                 f"{dur:.1f} s, {amp:.0f} µV peak-to-peak"))
    k_onsets = {round(k[0], 3) for k in ev.k_complexes}
    for on, ptp, dur in ev.k_complexes:
        out.append(EvidenceEvent("k_complex", "F4-M1", t0 + on, t0 + on + dur,
                                 f"K complex on F4-M1 at {on:.1f} s: {ptp:.0f} µV peak-to-peak, {dur:.1f} s"))
    for on, ptp, dur in ev.slow_waves:
        if round(on, 3) in k_onsets:
            continue   # drawn as the K complex it is
        out.append(EvidenceEvent("slow_wave", "F4-M1", t0 + on, t0 + on + dur,
                                 f"Slow wave on F4-M1 at {on:.1f} s: {ptp:.0f} µV peak-to-peak, {dur:.1f} s"))
    for t, amp in ev.rems:
        for role in ("LOC", "ROC"):
            out.append(EvidenceEvent("rem", role, t0 + t - REM_HALF_WIDTH_S, t0 + t + REM_HALF_WIDTH_S,
                                     f"Rapid eye movement at {t:.1f} s: {amp:.0f} µV (LOC-ROC)"))
    for start, stop in _runs(sorted(alpha_seconds)):
        out.append(EvidenceEvent("alpha", "O2-M1", t0 + start, t0 + stop,
                                 f"Alpha rhythm dominant on O2-M1, {start}-{stop} s "
                                 f"({ev.alpha_fraction:.0%} of the epoch)"))
    return out


def _runs(seconds: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for s in seconds:
        if runs and runs[-1][1] == s:
            runs[-1] = (runs[-1][0], s + 1)
        else:
            runs.append((s, s + 1))
    return runs


class EvidenceCache:
    """Per-epoch evidence of one recording through one montage; safe to call from a worker
    thread (the recording serialises its reads; the cache has its own lock)."""

    def __init__(self, recording, montage: Montage, context_epochs: int = CONTEXT_EPOCHS):
        self.recording = recording
        self.montage = montage
        self.context = int(context_epochs)
        self.n_epochs = int(recording.n_epochs)
        self._found: dict[int, EpochFindings] = {}
        self._chin_range: tuple[float, float] | None = None
        self._chin_done = False
        self._lock = threading.Lock()

    def cached(self, epoch: int) -> EpochFindings | None:
        """The findings of ``epoch`` if already measured; never measures.

        Parameters
        ----------
        epoch : int
            Epoch index.

        Returns
        -------
        EpochFindings or None
            None when the epoch has not been measured yet.
        """
        with self._lock:
            return self._found.get(int(epoch))

    def get(self, epoch: int) -> EpochFindings:
        """The findings of ``epoch``, measured now unless already kept.

        Measuring reads every role over the epoch and ``context_epochs`` epochs either side; the
        first chin level measured also reads the whole night's chin, once.

        Parameters
        ----------
        epoch : int
            Epoch index, ``0 .. n_epochs - 1``.

        Returns
        -------
        EpochFindings

        Raises
        ------
        IndexError
            When ``epoch`` lies outside the recording.
        RecordingError
            When the recording lacks a montage channel or cannot be read.
        """
        epoch = int(epoch)
        if not 0 <= epoch < self.n_epochs:
            raise IndexError(f"epoch {epoch} is outside the recording (0-{self.n_epochs - 1})")
        found = self.cached(epoch)
        if found is None:
            found = self._measure(epoch)
            with self._lock:
                self._found[epoch] = found
        return found

    def _signals(self, first: int, last: int) -> dict:
        start, stop = first * EPOCH_SECONDS, last * EPOCH_SECONDS
        return {role: read_role(self.recording, d, start, stop)
                for role, d in self.montage.roles.items() if d is not None}

    def _measure(self, epoch: int) -> EpochFindings:
        first = max(0, epoch - self.context)
        last = min(self.n_epochs, epoch + self.context + 1)
        signals = self._signals(first, last)
        window = measure_night(signals, last - first)
        ev = replace(window[epoch - first], index=epoch)
        ev = self._rescale_chin(ev)
        alpha: tuple[int, ...] = ()
        if ev.is_measurable("alpha") and "O2-M1" in signals:
            x, fs = signals["O2-M1"]
            n_sec = int((last - first) * EPOCH_SECONDS)
            mask = det.alpha_seconds(x, fs, n_sec)
            k = int((epoch - first) * EPOCH_SECONDS)
            alpha = tuple(int(s) for s in np.flatnonzero(mask[k:k + int(EPOCH_SECONDS)]))
        return EpochFindings(ev, alpha)

    def night_chin_range(self) -> tuple[float, float] | None:
        """The night's (5th, 95th) percentile of per-epoch chin RMS (None without a chin role)."""
        if not self._chin_done:
            d = self.montage.roles.get("CHIN")
            rng = None
            if d is not None:
                x, fs = read_role(self.recording, d, 0.0, self.n_epochs * EPOCH_SECONDS)
                rms = det.rms_epochs(x, fs, self.n_epochs)
                cov = det.coverage_seconds(x, fs, int(self.n_epochs * EPOCH_SECONDS))
                ok = (cov.reshape(self.n_epochs, -1).mean(axis=1) >= 0.5) & np.isfinite(rms)
                if ok.any():
                    p5, p95 = np.percentile(rms[ok], [5, 95])
                    rng = (float(p5), float(p95))
            with self._lock:
                self._chin_range, self._chin_done = rng, True
        return self._chin_range

    def _rescale_chin(self, ev: EpochEvidence) -> EpochEvidence:
        if not np.isfinite(ev.chin_rms):
            return ev
        rng = self.night_chin_range()
        if rng is None:
            return ev
        span = max(rng[1] - rng[0], 1e-6)
        return replace(ev, chin_relative=round(float((ev.chin_rms - rng[0]) / span), 3))
