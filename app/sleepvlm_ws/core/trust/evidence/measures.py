"""What the signal shows in each 30-s epoch: the measurements the AASM rules are checked against.

``measure_night`` runs every detector once over the whole night and bins the results into
epochs; ``measure_recording`` reads the montage's roles from a recording first. A role that
is missing (or a gap covering most of an epoch) makes the items it feeds "not measurable"
rather than zero: ``EpochEvidence.measurable[item]`` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...base.stages import EPOCH_SECONDS
from ...signals.montage import EEG_ROLES, Montage, read_role
from . import detectors as det

# The measurable items and the roles each needs (all of them).
ITEMS: dict[str, tuple[str, ...]] = {
    "alpha": ("O2-M1",),
    "spindles": ("C4-M1",),        # or F4-M1: see _measurable
    "k_complexes": ("F4-M1",),
    "slow_waves": ("F4-M1",),
    "rems": ("LOC", "ROC"),
    "sems": ("LOC", "ROC"),
    "blinks": ("LOC", "ROC"),
    "chin": ("CHIN",),
    "artefact": ("F4-M1",),        # any EEG role: see _measurable
}
SLOW_WAVE_ROLE = "F4-M1"
SPINDLE_ROLES = ("C4-M1", "F4-M1", "O2-M1")


@dataclass
class EpochEvidence:
    """One epoch's measurements; times are seconds from the epoch's onset."""

    index: int
    alpha_fraction: float = 0.0                 # share of 1-s windows with O2 alpha dominant
    band_db: dict[str, dict[str, float]] = field(default_factory=dict)  # role -> band -> dB
    spindles: list[tuple[str, float, float, float, float]] = field(default_factory=list)
    # (role, onset_s, duration_s, frequency_hz, peak-to-peak uV)
    k_complexes: list[tuple[float, float, float]] = field(default_factory=list)  # (onset, ptp_uv, duration)
    slow_waves: list[tuple[float, float, float]] = field(default_factory=list)   # (onset, ptp_uv, duration)
    slow_wave_seconds: float = 0.0              # seconds of > 75 uV 0.5-2 Hz waves on F4-M1
    rems: list[tuple[float, float]] = field(default_factory=list)  # (time_s, amplitude_uv)
    blinks: int = 0
    sems: int = 0
    chin_rms: float = float("nan")              # uV, above 10 Hz
    chin_relative: float = float("nan")         # 0 = night's 5th percentile, 1 = its 95th
    artefact_seconds: float = 0.0
    measurable: dict[str, bool] = field(default_factory=dict)
    # Spindles / K complexes in the previous epoch's second half (for N2.1), onset in that epoch.
    previous_late_events: list[tuple[str, float]] = field(default_factory=list)

    def is_measurable(self, item: str) -> bool:
        return bool(self.measurable.get(item, False))

    @property
    def chin_low(self) -> bool:
        """Chin tone near the night's lowest (relative level <= 0.25)."""
        return bool(np.isfinite(self.chin_relative) and self.chin_relative <= 0.25)

    def spindle_or_k_in(self, lo_s: float, hi_s: float) -> list[tuple[str, float]]:
        """("spindle" | "K complex", onset) with onset in [lo_s, hi_s) of this epoch."""
        found = [("spindle", s[1]) for s in self.spindles if lo_s <= s[1] < hi_s]
        found += [("K complex", k[0]) for k in self.k_complexes if lo_s <= k[0] < hi_s]
        return sorted(found, key=lambda e: e[1])


def _measurable(item: str, present: dict[str, np.ndarray], epoch: int) -> bool:
    """``present`` role -> per-epoch bool (role loaded and covering most of the epoch)."""
    def ok(role: str) -> bool:
        flags = present.get(role)
        return flags is not None and epoch < flags.size and bool(flags[epoch])
    if item == "spindles":
        return ok("C4-M1") or ok("F4-M1")
    if item == "artefact":
        return any(ok(r) for r in EEG_ROLES)
    return all(ok(r) for r in ITEMS[item])


def _events_by_epoch(times: np.ndarray, n_epochs: int) -> list[np.ndarray]:
    """Indices of events per epoch, by onset time."""
    idx = np.floor(np.asarray(times, dtype=float) / EPOCH_SECONDS).astype(int)
    order = np.argsort(idx, kind="stable")
    bounds = np.searchsorted(idx[order], np.arange(n_epochs + 1))
    return [order[bounds[e]:bounds[e + 1]] for e in range(n_epochs)]


def _seconds_in_epochs(waves: np.ndarray, n_epochs: int) -> np.ndarray:
    """Sum of wave durations per epoch, each wave split at epoch boundaries."""
    out = np.zeros(n_epochs)
    for on, dur in zip(waves[:, 0], waves[:, 1]):
        end = on + dur
        e = int(on // EPOCH_SECONDS)
        while e < n_epochs and on < end:
            stop = min(end, (e + 1) * EPOCH_SECONDS)
            if e >= 0:
                out[e] += stop - on
            on = stop
            e += 1
    return out


def measure_night(signals: dict[str, tuple[np.ndarray, float]], n_epochs: int) -> list[EpochEvidence]:
    """Measure a whole night. ``signals``: role -> (microvolt samples from epoch 0's onset, fs);
    absent roles (or None) are missing. Returns one ``EpochEvidence`` per epoch."""
    if n_epochs <= 0:
        return []
    signals = {r: v for r, v in signals.items() if v is not None and len(v[0])}
    n_sec = int(n_epochs * EPOCH_SECONDS)
    ev = [EpochEvidence(index=e) for e in range(n_epochs)]
    present: dict[str, np.ndarray] = {}
    for role, (x, fs) in signals.items():
        cov = det.coverage_seconds(x, fs, n_sec)
        present[role] = cov.reshape(n_epochs, int(EPOCH_SECONDS)).mean(axis=1) >= 0.5 if n_epochs else cov
    for e in ev:
        e.measurable = {item: _measurable(item, present, e.index) for item in ITEMS}

    if "O2-M1" in signals:
        x, fs = signals["O2-M1"]
        frac = det.alpha_seconds(x, fs, n_sec).astype(float).reshape(n_epochs, -1).mean(axis=1)
        for e in ev:
            e.alpha_fraction = float(frac[e.index])
    for role in EEG_ROLES:
        if role not in signals:
            continue
        x, fs = signals[role]
        db = det.band_power_epochs(x, fs, n_epochs)
        for e in ev:
            e.band_db[role] = {b: round(float(v), 2) for b, v in zip(det.BANDS, db[e.index])}
    # Bursts inside an occipital alpha train are alpha, not spindles (alpha mask from O2-M1,
    # or the lead itself when O2-M1 is missing).
    o2_alpha = (det.alpha_seconds(signals["O2-M1"][0], signals["O2-M1"][1], n_sec)
                if "O2-M1" in signals else None)
    for role in SPINDLE_ROLES:
        if role not in signals:
            continue
        x, fs = signals[role]
        mask = o2_alpha if o2_alpha is not None else det.alpha_seconds(x, fs, n_sec)
        spindles = det.detect_spindles(x, fs, mask)
        for on, dur, freq, amp in spindles:
            k = int(on // EPOCH_SECONDS)
            if 0 <= k < n_epochs:
                ev[k].spindles.append((role, round(float(on) - k * EPOCH_SECONDS, 3), round(float(dur), 3),
                                       round(float(freq), 2), round(float(amp), 1)))
    if SLOW_WAVE_ROLE in signals:
        x, fs = signals[SLOW_WAVE_ROLE]
        waves = det.detect_slow_waves(x, fs)
        seconds = _seconds_in_epochs(waves, n_epochs)
        kcs = det.k_complex_rows(waves)
        for rows, attr in ((waves, "slow_waves"), (kcs, "k_complexes")):
            for e_idx, sel in enumerate(_events_by_epoch(rows[:, 0], n_epochs)):
                getattr(ev[e_idx], attr).extend(
                    (round(float(rows[i, 0]) - e_idx * EPOCH_SECONDS, 3), round(float(rows[i, 2]), 1),
                     round(float(rows[i, 1]), 3))
                    for i in sel)
        for e in ev:
            e.slow_wave_seconds = round(float(seconds[e.index]), 2)
    if "LOC" in signals and "ROC" in signals:
        (loc, fs), (roc, fs_r) = signals["LOC"], signals["ROC"]
        if fs == fs_r:
            rems, sems = det.detect_eye_movements(loc, roc, fs)
            blinks = det.detect_blinks(loc, roc, fs)
            rem_t = np.array([r[0] for r in rems])
            for e_idx, sel in enumerate(_events_by_epoch(rem_t, n_epochs)):
                ev[e_idx].rems = [(round(rems[i][0] - e_idx * EPOCH_SECONDS, 3), round(rems[i][1], 1))
                                  for i in sel]
            for e_idx, sel in enumerate(_events_by_epoch(np.array(sems), n_epochs)):
                ev[e_idx].sems = int(sel.size)
            for e_idx, sel in enumerate(_events_by_epoch(np.array(blinks), n_epochs)):
                ev[e_idx].blinks = int(sel.size)
        else:  # unequal eye-lead rates: not compared sample by sample
            for e in ev:
                for item in ("rems", "sems", "blinks"):
                    e.measurable[item] = False
    if "CHIN" in signals:
        x, fs = signals["CHIN"]
        rms = det.rms_epochs(x, fs, n_epochs)
        ok = np.array([e.measurable["chin"] for e in ev]) & np.isfinite(rms)
        if ok.any():
            p5, p95 = np.percentile(rms[ok], [5, 95])
            span = max(p95 - p5, 1e-6)
            for e in ev:
                if ok[e.index]:
                    e.chin_rms = round(float(rms[e.index]), 2)
                    e.chin_relative = round(float((rms[e.index] - p5) / span), 3)
    eeg = [r for r in EEG_ROLES if r in signals]
    if eeg:
        art = np.zeros(n_sec, dtype=bool)
        for role in eeg:
            x, fs = signals[role]
            art |= det.artefact_seconds(x, fs, n_sec)
        per_epoch = art.reshape(n_epochs, -1).sum(axis=1)
        for e in ev:
            e.artefact_seconds = float(per_epoch[e.index])
    for e in ev[1:]:
        prev = ev[e.index - 1]
        e.previous_late_events = prev.spindle_or_k_in(15.0, 30.0)
    return ev


def measure_recording(recording, montage: Montage) -> list[EpochEvidence]:
    """Read each role the montage fills (whole night) and measure it (see ``measure_night``).

    Parameters
    ----------
    recording : Recording
        The open recording; its whole 30-s epochs are measured (a partial tail is not).
    montage : Montage
        Which channels feed the roles; an empty role makes the items it feeds not measurable.

    Returns
    -------
    list of EpochEvidence
        One per epoch; times in seconds from the epoch's onset.

    Raises
    ------
    RecordingError
        When the recording lacks a channel the montage names or cannot be read.
    """
    n_epochs = recording.n_epochs
    signals = {}
    for role, derivation in montage.roles.items():
        if derivation is None:
            continue
        signals[role] = read_role(recording, derivation, 0.0, n_epochs * EPOCH_SECONDS)
    return measure_night(signals, n_epochs)
