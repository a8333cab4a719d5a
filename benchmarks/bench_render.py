"""Benchmark of the SleepVLM epoch renderer, on one core.

Prints (1) epochs per second of ``render_epoch`` (conditioning included), of its two halves
(``condition_epoch``, ``draw_epoch``) and of ``render_png`` for 100 / 256 / 512 Hz six-channel
windows (CPU time of this process, the median of ``REPEATS`` runs: robust to other load on a
shared machine), and (2) how far the windowed conditioning (epoch +- PAD_S s) is from
filtering the whole night, as in training, in microvolts.

Run: .venv/bin/python benchmarks/bench_render.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402

from sleepvlm_ws.core.signals.conditioning import EPOCH_SAMPLES, PAD_S, filter_signal, resample_linear  # noqa: E402
from sleepvlm_ws.core.signals.montage import ROLES  # noqa: E402
from sleepvlm_ws.core.signals.render import (EpochWindow, condition_epoch, draw_epoch, epoch_window_span,
                                             render_epoch, render_png, role_kind)

EPOCH_S = 30.0
REPEATS = 3


def synthetic_night(fs: float, minutes: float, seed: int = 0) -> dict[str, np.ndarray]:
    """A PSG-like recording: 1/f EEG with alpha, spindles and slow waves in turn, eye movements,
    chin EMG that fades in sleep, amplifier DC offsets, slow drift and 50 Hz mains."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * fs)
    t = np.arange(n) / fs
    freqs = np.fft.rfftfreq(n, 1 / fs)

    def coloured(amp_uv: float, shape) -> np.ndarray:
        spectrum = np.fft.rfft(rng.standard_normal(n)) * shape
        x = np.fft.irfft(spectrum, n)
        return x / x.std() * amp_uv

    pink = 1.0 / np.maximum(freqs, 0.5)
    emg_band = ((freqs > 10) & (freqs < min(150.0, fs / 2))).astype(float)
    # stage pattern every 5 minutes: wake (alpha) -> N2 (spindles) -> N3 (slow waves)
    phase = (t // 300).astype(int) % 3
    alpha = 25 * np.sin(2 * np.pi * 10 * t) * (phase == 0)
    spindles = 30 * np.sin(2 * np.pi * 13 * t) * ((t % 12) < 1.0) * (phase == 1)
    slow = 80 * np.sin(2 * np.pi * 1.0 * t) * (phase == 2)
    drift = coloured(40.0, 1.0 / np.maximum(freqs, 0.02) ** 2 * (freqs < 0.3))
    mains = 15 * np.sin(2 * np.pi * 50 * t)
    eye = np.convolve(rng.standard_normal(n) * (rng.random(n) < 0.3 / fs), np.ones(int(0.3 * fs)), "same") * 150
    emg_amp = np.where(phase == 0, 12.0, 3.0)
    signals = {}
    for k, role in enumerate(ROLES):
        kind = role_kind(role)
        if kind == "emg":
            x = coloured(1.0, emg_band) * emg_amp
        elif kind == "eog":
            x = coloured(10.0, pink) + (eye if role == "LOC" else -eye) + 0.3 * slow
        else:
            x = coloured(12.0, pink) + (alpha if role == "O2-M1" else 0.4 * alpha) + spindles + slow
        signals[role] = x + drift + mains + 200.0 * (k - 2)
    return signals


def window_for(signals: dict[str, np.ndarray], fs: float, epoch: int, pad_s: float) -> EpochWindow:
    duration = len(next(iter(signals.values()))) / fs
    span = epoch_window_span(epoch, duration, pad_s)
    a, b = int(round(span.start_s * fs)), int(round(span.stop_s * fs))
    return EpochWindow({r: (x[a:b], fs) for r, x in signals.items()}, pad_s,
                       pad_before_s=span.pad_before_s, pad_after_s=span.pad_after_s)


def throughput(func, items, min_cpu_s: float = 1.0) -> float:
    """Epochs per CPU second of this process, the median of REPEATS runs."""
    func(items[0])
    rates = []
    for _ in range(REPEATS):
        done = 0
        start = time.process_time()
        while True:
            for item in items:
                func(item)
            done += len(items)
            spent = time.process_time() - start
            if spent >= min_cpu_s:
                rates.append(done / spent)
                break
    return sorted(rates)[len(rates) // 2]


def pad_error(fs: float, pads=(5.0, 10.0, PAD_S, 20.0, 30.0)) -> dict[str, dict[float, float]]:
    """Max |windowed - whole-night| (uV) over the epoch's 3000 samples, for sampled epochs."""
    night = synthetic_night(fs, 120, seed=1)
    result: dict[str, dict[float, float]] = {}
    for role, kind in (("C4-M1", "eeg"), ("LOC", "eog"), ("CHIN", "emg")):
        full = filter_signal(night[role], fs, kind)
        worst = {}
        for pad in pads:
            err = 0.0
            for epoch in range(3, 235, 9):
                reference = resample_linear(full, fs, epoch * EPOCH_S, EPOCH_SAMPLES)
                w = window_for({role: night[role]}, fs, epoch, pad)
                x, _ = w.signals[role]
                mine = resample_linear(filter_signal(x, fs, kind), fs, w.before_s, EPOCH_SAMPLES)
                err = max(err, float(np.max(np.abs(mine - reference))))
            worst[pad] = err
        result[kind] = worst
    return result


def main() -> None:
    print(f"SleepVLM renderer benchmark (one core; PAD_S = {PAD_S:g} s)\n")
    header = f"{'input':>8} | {'render_epoch':>12} | {'condition_epoch':>15} | {'draw_epoch':>10} | {'render_png':>10}"
    print("epochs per second, one core")
    print(header)
    print("-" * len(header))
    sets = {}
    for fs in (100.0, 256.0, 512.0):
        night = synthetic_night(fs, 15)
        sets[fs] = [window_for(night, fs, e, PAD_S) for e in range(1, 29, 3)]
    for windows in sets.values():       # warm up caches and the allocator before timing
        for w in windows:
            render_png(w)
    for fs, windows in sets.items():
        traces = [condition_epoch(w) for w in windows]
        rates = (throughput(render_epoch, windows), throughput(condition_epoch, windows),
                 throughput(draw_epoch, traces), throughput(render_png, windows))
        print(f"{fs:>6.0f}Hz | {rates[0]:>12.0f} | {rates[1]:>15.0f} | {rates[2]:>10.0f} | {rates[3]:>10.0f}")
    print("\nEpoch-only conditioning (render's path) vs conditioning the whole window: max |difference|, uV")
    for fs, windows in sets.items():
        worst = 0.0
        for w in windows:
            fast = condition_epoch(w)
            for role, (x, rate) in w.signals.items():
                plain = resample_linear(filter_signal(x, rate, role_kind(role)), rate, w.before_s, EPOCH_SAMPLES)
                worst = max(worst, float(np.max(np.abs(fast[role] - plain))))
        print(f"{fs:>6.0f}Hz | {worst:.2g}")
    print("\nWindowed vs whole-night conditioning: max |difference| inside the epoch, uV")
    print("(one image pixel is 2.7 uV of EEG/EOG, 2.1 uV of chin EMG)")
    pads = (5.0, 10.0, PAD_S, 20.0, 30.0)
    print(f"{'input':>12} | " + " | ".join(f"pad {p:>4g} s" for p in pads))
    for fs in (100.0, 256.0, 512.0):
        for kind, worst in pad_error(fs, pads).items():
            print(f"{fs:>4.0f}Hz {kind:>4} | " + " | ".join(f"{worst[p]:>10.2g}" for p in pads))


if __name__ == "__main__":
    main()
