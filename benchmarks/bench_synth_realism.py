"""Benchmark of the synthetic night generator's realism and speed.

Generates full nights (default 3 seeds x 8 h at 256 Hz), times each generation, runs YASA's
pretrained stager (trained on thousands of real NSRR nights) on C4-M1 / LOC / chin, and prints
Cohen's kappa, accuracy and per-stage recall/precision against the generator's hypnogram, then
the pooled confusion matrix. Target (issue 4): kappa >= 0.7; generation < ~15 s per 8-h night.

Run: .venv/bin/python benchmarks/bench_synth_realism.py [--seeds 0 1 2] [--hours 8] [--fs 256]
"""

from __future__ import annotations

import os
import platform
import warnings

from sleepvlm_ws.core.synth.realism import main

if __name__ == "__main__":
    warnings.filterwarnings("ignore")  # sklearn warns about YASA's pickled model version
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    main()
