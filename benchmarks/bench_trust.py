"""Benchmark of the trust checks over a whole night: the AASM evidence and the YASA second opinion.

Generates an 8-hour, 256-Hz synthetic night (six roles) and writes it as EDF+, then times, on
the real Recording: ``measure_recording`` (every detector over the night), ``second_opinion
.compute`` (read, resample to 100 Hz, YASA's features and classifier), storing the result in a
study, and building the review queue from the generator's stages as stand-in suggestions.
Target: evidence + second opinion <= 60 s on 2 cores. Also prints how well the second opinion
agrees with the generator's stages.

Run: .venv/bin/python benchmarks/bench_trust.py [hours]
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sleepvlm_ws.core.trust import second_opinion
from sleepvlm_ws.core.trust.evidence import derive_rules, measure_recording
from sleepvlm_ws.core.signals.montage import auto_montage
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.core.review.review_queue import build_queue
from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.study.study import Study
from sleepvlm_ws.core.synth import generate_night, write_night_edf


@dataclass
class _Said:          # a stand-in suggestion: the generator's stage with the rules it supports
    epoch: int
    stage: Stage
    rules: tuple
    stage_text: str = ""
    flags: tuple = ()
    model_id: str = "bench"
    renderer_version: str = "bench"


def main() -> None:
    hours = float(sys.argv[1]) if len(sys.argv) > 1 else 8.0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        night = generate_night(seed=1, hours=hours, fs=256.0)
        path = write_night_edf(night, Path(tmp) / "night.edf")
        t1 = time.perf_counter()
        with Recording.open(path) as rec:
            montage = auto_montage([c.label for c in rec.channels])
            t2 = time.perf_counter()
            evidence = measure_recording(rec, montage)
            t3 = time.perf_counter()
            result = second_opinion.compute(rec, montage)
            t4 = time.perf_counter()
            with Study.create(Path(tmp) / "s.sleepvlm", recording_path=path,
                              n_epochs=rec.n_epochs, montage=montage, scorer="bench") as study:
                second_opinion.store(study, result, "bench")
                opinions = second_opinion.load(study)
            t5 = time.perf_counter()
        stages = night.stages
        said = {e: _Said(e, s, tuple(derive_rules(evidence, e, stages)))
                for e, s in enumerate(stages) if s in SLEEP_STAGES}
        t6 = time.perf_counter()
        queue = build_queue(len(stages), said, second_opinions=opinions, evidence=evidence)
        t7 = time.perf_counter()
    truth = np.array([s.value for s in stages])
    got = np.array([opinions[e].stage.value if e in opinions else "-" for e in range(len(stages))])
    agree = float(np.mean(truth == got))
    chance = sum(np.mean(truth == s.value) * np.mean(got == s.value) for s in SLEEP_STAGES)
    kappa = (agree - chance) / (1 - chance)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"night: {hours:g} h, {len(stages)} epochs, 6 roles at 256 Hz "
          f"(generated and written in {t1 - t0:.1f} s); {os.cpu_count()} cores visible")
    print()
    print("| step | seconds | target |")
    print("| --- | --- | --- |")
    print(f"| evidence: measure_recording (read + all detectors) | {t3 - t2:.1f} | - |")
    print(f"| second opinion: compute (read, 100 Hz, YASA {result.method}) | {t4 - t3:.1f} | - |")
    print(f"| evidence + second opinion | {t4 - t2:.1f} | <= 60 |")
    print(f"| store + load the second opinion (study file) | {t5 - t4:.2f} | - |")
    print(f"| build the review queue ({len(said)} suggestions) | {t7 - t6:.2f} | - |")
    print()
    print(f"second opinion vs the generator's stages: agreement {agree:.1%}, Cohen's kappa "
          f"{kappa:.2f}; {len(queue.flagged)} of {len(said)} epochs flagged; "
          f"peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
