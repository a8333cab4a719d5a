"""Our evidence detectors against yasa's (spindles_detect, sw_detect, rem_detect).

On generated 8-h nights (core.synth, 256 Hz) the planted events are known (``night.events``):
spindles (onset, C4-M1), K complexes (F4-M1, N2 only) and rapid eye movements (R only). Slow
waves in N3 are band-limited noise without an event list, so a separate 8-h F4 channel gets
isolated slow waves (0.6-1.6 Hz, 80-220 uV peak-to-peak, negative half first) planted by hand
into 1/f background. Each detector runs once over the whole channel; a detection matches a
planted event when its onset is within 0.5 s (one-to-one, nearest first). Reported: precision,
recall, F1 and seconds per 8-h channel (REMs: the LOC+ROC pair).

K complexes and REMs are scored inside the stage they were planted in (N2, R) for both
detectors: the generator adds unlisted eye movements in wake and unlisted slow waves in N3.
yasa runs without a hypnogram (as ours does), and for spindles / REMs also with the true one.

The last table measures the per-epoch evidence cache (core.trust.evidence.epoch_cache, what the UI
uses) against the whole-night measurement: milliseconds per epoch and agreement.

Run: .venv/bin/python benchmarks/bench_detectors.py [nights=3] [hours=8]
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from sleepvlm_ws.core.trust.evidence import detectors as det
from sleepvlm_ws.core.trust.evidence import measure_night
from sleepvlm_ws.core.trust.evidence.epoch_cache import EvidenceCache
from sleepvlm_ws.core.trust.evidence.rules_check import SLOW_WAVE_N3_S
from sleepvlm_ws.core.signals.montage import auto_montage
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.core.base.stages import EPOCH_SECONDS, Stage
from sleepvlm_ws.core.synth import generate_night, write_night_edf
from sleepvlm_ws.core.synth import waveforms as wf

TOLERANCE_S = 0.5
YASA_STAGE = {Stage.W: 0, Stage.N1: 1, Stage.N2: 2, Stage.N3: 3, Stage.R: 4}


def match(truth, found, tol: float = TOLERANCE_S) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives), one-to-one, nearest pairs first."""
    truth, found = np.sort(np.asarray(truth, float)), np.sort(np.asarray(found, float))
    if not truth.size or not found.size:
        return 0, int(found.size), int(truth.size)
    pairs = sorted((abs(f - t), i, j) for i, t in enumerate(truth)
                   for j in range(np.searchsorted(found, t - tol), np.searchsorted(found, t + tol, "right"))
                   for f in [found[j]])
    used_t, used_f = set(), set()
    for d, i, j in pairs:
        if d <= tol and i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    tp = len(used_t)
    return tp, int(found.size) - tp, int(truth.size) - tp


def in_stage(times, stages, stage) -> np.ndarray:
    times = np.asarray(times, float)
    idx = np.clip((times // EPOCH_SECONDS).astype(int), 0, len(stages) - 1)
    keep = np.array([stages[i] is stage for i in idx], dtype=bool) if times.size else np.zeros(0, bool)
    return times[keep]


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def with_hypno(fn, *args, hypno, include, **kwargs):
    """yasa refuses a hypnogram without the included stages: then nothing is found."""
    if not np.isin(hypno, include).any():
        return None, 0.0
    return timed(fn, *args, hypno=hypno, include=include, **kwargs)


def yasa_times(result, column: str = "Start") -> np.ndarray:
    return np.zeros(0) if result is None else result.summary()[column].to_numpy(float)


def hypno_samples(stages, n: int, fs: float) -> np.ndarray:
    return np.repeat([YASA_STAGE.get(s, -1) for s in stages], int(EPOCH_SECONDS * fs))[:n]


def planted_slow_waves(hours: float, fs: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 * fs)
    pink, _ = wf.aperiodic_pair(n, fs, rng)
    x = 12.0 * pink + 4.0 * wf.band_noise(n, fs, 4.0, 8.0, rng)
    onsets, t = [], 5.0
    while t < n / fs - 10:
        freq, ptp = rng.uniform(0.6, 1.6), rng.uniform(80, 220)
        tw = np.arange(int(fs / freq)) / fs
        wf.add_at(x, int(t * fs), (-ptp / 2 * np.sin(2 * np.pi * freq * tw)).astype(np.float32))
        onsets.append(t)
        t += rng.uniform(4.0, 12.0)
    return x, np.array(onsets)


def one_night(seed: int, hours: float, rows: dict) -> None:
    import yasa

    night = generate_night(seed=seed, hours=hours, fs=256.0)
    fs, sig, st = night.fs, night.signals, night.stages
    scale = 8.0 * 3600 / (len(st) * EPOCH_SECONDS)        # seconds per 8-h channel
    hyp = hypno_samples(st, sig["C4-M1"].size, fs)
    truth = {k: np.array([t for t, kind in night.events if kind == k]) for k in ("spindle", "k_complex", "rem")}

    def add(name, tp_fp_fn, seconds):
        r = rows.setdefault(name, [0, 0, 0, 0.0, 0])
        for i, v in enumerate(tp_fp_fn):
            r[i] += v
        r[3] += seconds * scale
        r[4] += 1

    n_sec = int(len(st) * EPOCH_SECONDS)
    mask = det.alpha_seconds(sig["O2-M1"], fs, n_sec)
    ours, s = timed(det.detect_spindles, sig["C4-M1"], fs, mask)
    add("spindles: ours (C4-M1)", match(truth["spindle"], [o[0] for o in ours]), s)
    res, s = timed(yasa.spindles_detect, sig["C4-M1"], fs, verbose="error")
    add("spindles: yasa, no hypnogram", match(truth["spindle"], yasa_times(res)), s)
    res, s = with_hypno(yasa.spindles_detect, sig["C4-M1"], fs, hypno=hyp, include=(2, 3), verbose="error")
    add("spindles: yasa, true hypnogram N2/N3", match(truth["spindle"], yasa_times(res)), s)

    waves, s = timed(det.detect_slow_waves, sig["F4-M1"], fs)
    kc = det.k_complex_rows(waves)
    add("K complexes in N2: ours (F4-M1)",
        match(in_stage(truth["k_complex"], st, Stage.N2), in_stage(kc[:, 0], st, Stage.N2)), s)
    res, s = timed(yasa.sw_detect, sig["F4-M1"], fs, verbose="error")
    add("K complexes in N2: yasa sw_detect",
        match(in_stage(truth["k_complex"], st, Stage.N2), in_stage(yasa_times(res), st, Stage.N2)), s)

    x, onsets = planted_slow_waves(hours, fs, seed + 100)
    waves, s = timed(det.detect_slow_waves, x, fs)
    add("slow waves (planted): ours", match(onsets, waves[:, 0]), s)
    res, s = timed(yasa.sw_detect, x, fs, verbose="error")
    add("slow waves (planted): yasa sw_detect", match(onsets, yasa_times(res)), s)

    (rems, _), s = timed(det.detect_eye_movements, sig["LOC"], sig["ROC"], fs)
    add("REMs in R: ours (LOC/ROC)",
        match(in_stage(truth["rem"], st, Stage.R), in_stage([r[0] for r in rems], st, Stage.R)), s)
    res, s = timed(yasa.rem_detect, sig["LOC"], sig["ROC"], fs, verbose="error")
    add("REMs in R: yasa, no hypnogram",
        match(in_stage(truth["rem"], st, Stage.R), in_stage(yasa_times(res), st, Stage.R)), s)
    res, s = with_hypno(yasa.rem_detect, sig["LOC"], sig["ROC"], fs, hypno=hyp, include=4, verbose="error")
    add("REMs in R: yasa, true hypnogram",
        match(in_stage(truth["rem"], st, Stage.R), in_stage(yasa_times(res), st, Stage.R)), s)
    if seed == 1:
        cache_table(night)


def cache_table(night, n: int = 120) -> None:
    """Per-epoch cache (the UI's) against the whole-night measurement, on ``n`` epochs."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_night_edf(night, Path(tmp) / "night.edf")
        with Recording.open(path) as rec:
            montage = auto_montage([c.label for c in rec.channels])
            whole, s_night = timed(measure_night, {r: (x, night.fs) for r, x in night.signals.items()},
                                   len(night.stages))
            cache = EvidenceCache(rec, montage)
            _, s_chin = timed(cache.night_chin_range)
            epochs = np.linspace(2, len(night.stages) - 3, n).astype(int)
            times, found = [], []
            for e in epochs:
                f, s = timed(cache.get, int(e))
                times.append(s)
                found.append(f.evidence)
    sp = [0, 0, 0]
    n3 = chin = 0
    for e, ev in zip(epochs, found):
        a = [x[1] for x in ev.spindles if x[0] == "C4-M1"]
        b = [x[1] for x in whole[e].spindles if x[0] == "C4-M1"]
        for i, v in enumerate(match(b, a, 0.1)):
            sp[i] += v
        n3 += (ev.slow_wave_seconds >= SLOW_WAVE_N3_S) == (whole[e].slow_wave_seconds >= SLOW_WAVE_N3_S)
        chin += ev.chin_low == whole[e].chin_low
    tp, fp, fn = sp
    print(f"\nPer-epoch evidence cache ({len(epochs)} epochs of night seed 1, read from EDF, "
          f"{2 * 2 + 1} epochs of signal each):")
    print(f"  ms per epoch: median {1000 * np.median(times):.0f}, max {1000 * max(times):.0f}; "
          f"night chin range once: {s_chin:.2f} s; whole-night measure_night: {s_night:.1f} s")
    print(f"  agreement with the whole-night measurement: C4 spindles F1 "
          f"{2 * tp / max(2 * tp + fp + fn, 1):.2f}, N3.1 (>= 6 s slow waves) {n3 / len(epochs):.0%}, "
          f"chin low {chin / len(epochs):.0%}")


def main() -> None:
    warnings.filterwarnings("ignore")
    nights = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    hours = float(sys.argv[2]) if len(sys.argv) > 2 else 8.0
    rows: dict = {}
    for seed in range(1, nights + 1):
        one_night(seed, hours, rows)
    print(f"\n{nights} generated night(s) of {hours:g} h at 256 Hz; onset tolerance {TOLERANCE_S} s\n")
    print(f"| {'detector':40s} | planted | found | precision | recall |   F1 | s per 8-h channel |")
    print(f"|{'-' * 42}|--------:|------:|----------:|-------:|-----:|------------------:|")
    for name, (tp, fp, fn, secs, k) in rows.items():
        p = tp / max(tp + fp, 1)
        r = tp / max(tp + fn, 1)
        f1 = 2 * p * r / max(p + r, 1e-9)
        print(f"| {name:40s} | {tp + fn:7d} | {tp + fp:5d} | {p:9.2f} | {r:6.2f} | {f1:4.2f} | {secs / k:17.2f} |")


if __name__ == "__main__":
    main()
