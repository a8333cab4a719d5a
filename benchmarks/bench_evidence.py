"""Benchmark of measuring the AASM evidence over a whole night.

Generates an 8-hour, 256-Hz synthetic night (six roles), then times ``measure_night`` (every
detector run once over the night, binned into 960 epochs) and, on top of it, deriving the
rules and writing a rationale for every epoch. Target: whole-night evidence < 60 s on 2 cores.

Run: .venv/bin/python benchmarks/bench_evidence.py [hours]
"""

from __future__ import annotations

import sys
import time

from sleepvlm_ws.core.trust.evidence import derive_rules, measure_night, write_rationale
from sleepvlm_ws.core.synth import generate_night


def main() -> None:
    hours = float(sys.argv[1]) if len(sys.argv) > 1 else 8.0
    t0 = time.perf_counter()
    night = generate_night(seed=1, hours=hours, fs=256.0)
    t1 = time.perf_counter()
    signals = {role: (x, night.fs) for role, x in night.signals.items()}
    evidence = measure_night(signals, len(night.stages))
    t2 = time.perf_counter()
    for i, stage in enumerate(night.stages):
        derive_rules(evidence, i, night.stages)
        write_rationale(stage, evidence, i, night.stages)
    t3 = time.perf_counter()
    print(f"night: {hours:g} h, {len(night.stages)} epochs, 6 roles at 256 Hz (generated in {t1 - t0:.1f} s)")
    print(f"measure_night: {t2 - t1:.1f} s  (target < 60 s)")
    print(f"derive_rules + write_rationale, all epochs: {t3 - t2:.2f} s")


if __name__ == "__main__":
    main()
