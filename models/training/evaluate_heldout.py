"""Evaluate a default-model pack on held-out generated subjects: the figures in its model card.

    python models/training/evaluate_heldout.py --pack models/default [--f16 WORK/pack-f16] --out DIR

Subjects (generator seeds 9101-9105, never used in training: training uses 1000-1043):
  9101-9103  full six-role montage, 8 h, at 256 / 200 / 100 Hz
  9104       a single central EEG (C3-A1) at 100 Hz, 8 h
  9105       full montage at 50 Hz, 8 h
Each is written as a real EDF+ with its hypnogram as annotations and evaluated through
core/pipeline/evaluate.py (the `sleepvlm-ws evaluate` code): kappa, accuracy, macro-F1, per-stage recall,
confusion, YASA side by side, parse rate, rule-citation agreement with the evidence targets.
The f16 pack (same checkpoint, unquantised LM) is run on 9101-9103 (or the first --f16-subjects)
for the 4-bit comparison. Model answers are stored in one study per subject and pack in DIR, so a
rerun resumes and only repeats the comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1] / "app")]

SUBJECTS = [  # seed, fs, labels (role -> EDF label), what
    (9101, 256.0, None, "full montage, 256 Hz"),
    (9102, 200.0, None, "full montage, 200 Hz"),
    (9103, 100.0, None, "full montage, 100 Hz"),
    (9104, 100.0, {"C4-M1": "EEG C3-A1"}, "one channel (C3-A1), 100 Hz"),
    (9105, 50.0, None, "full montage, 50 Hz"),
]


def write_edf(night, path: Path, labels: dict | None) -> Path:
    """The night as EDF+ with only ``labels`` (role -> label) or all six roles."""
    import numpy as np
    import pyedflib

    from sleepvlm_ws.core.base.hypnogram import Hypnogram
    from sleepvlm_ws.core.study.formats.edf_plus import LABELS
    from sleepvlm_ws.core.synth.night import EDF_LABELS

    labels = labels or EDF_LABELS
    w = pyedflib.EdfWriter(str(path), len(labels), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        w.setSignalHeaders([{"label": lab, "dimension": "uV", "sample_frequency": night.fs,
                             "physical_min": -3276.7, "physical_max": 3276.7,
                             "digital_min": -32767, "digital_max": 32767} for lab in labels.values()])
        w.writeSamples([np.clip(night.signals[r], -3276.7, 3276.7).astype(np.float64) for r in labels])
        for onset, duration, stage in Hypnogram(stages=list(night.stages)).segments():
            w.writeAnnotation(onset, duration, LABELS[stage])
    finally:
        w.close()
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--f16", type=Path, help="the same checkpoint's f16 pack")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write-only", action="store_true", help="only write the recordings")
    ap.add_argument("--f16-subjects", type=int, default=3,
                    help="how many of the full-montage subjects the f16 pack is run on")
    args = ap.parse_args()
    from sleepvlm_ws.core.model.runtime import LocalRuntime
    from sleepvlm_ws.core.pipeline.evaluate import evaluate_recording
    from sleepvlm_ws.core.pipeline.evaluation_tables import pooled
    from sleepvlm_ws.core.synth.night import generate_night

    rec_dir = args.out / "recordings"
    rec_dir.mkdir(parents=True, exist_ok=True)
    if args.write_only:
        for seed, fs, labels, _what in SUBJECTS:
            edf = rec_dir / f"heldout-{seed}.edf"
            if not edf.is_file():
                write_edf(generate_night(seed=seed, hours=args.hours, fs=fs), edf, labels)
        return 0
    # The recordings are written by a child process, so this one only reads them. (A first run
    # here read zeros: opening one EDF twice in a process made pyedflib close the first reader;
    # core/signals/edf_sources.py now refuses the second pyedflib open, see tests/pipeline/test_evaluate.py.)
    import subprocess

    subprocess.run([sys.executable, __file__, "--write-only", "--pack", str(args.pack), "--out",
                    str(args.out), "--hours", str(args.hours)], check=True)
    runs = [("Q4_K_M", args.pack, SUBJECTS)]
    if args.f16:
        runs.append(("F16", args.f16, SUBJECTS[:max(1, min(3, args.f16_subjects))]))
    report = {"hours": args.hours, "subjects": {str(s[0]): s[3] for s in SUBJECTS}, "runs": {}}
    for quant, pack, subjects in runs:
        rt = LocalRuntime(pack, n_threads=args.threads)
        results = []
        for seed, fs, labels, what in subjects:
            edf = rec_dir / f"heldout-{seed}.edf"
            t0 = time.time()
            r = evaluate_recording(edf, edf, rt, study_path=args.out / f"heldout-{seed}-{quant}.svlm",
                                   with_yasa=quant == "Q4_K_M")
            d = r.to_dict(with_epochs=True)
            d["what"] = what
            results.append(r)
            (args.out / f"heldout-{seed}-{quant}.json").write_text(json.dumps(d, indent=1), encoding="utf-8")
            ma = d["model_agreement"]
            ya = d["yasa_agreement"]
            if labels is None and fs >= 80 and ya and ya["kappa"] < 0.5:   # YASA as a canary
                print(f"WARNING {seed}: YASA kappa {ya['kappa']:.2f}: are the recording's samples read "
                      "correctly?", flush=True)
            print(f"{quant} {seed} ({what}): kappa {ma['kappa']:.3f} acc {ma['accuracy']:.3f} "
                  f"N1 recall {ma['recall'].get('N1')} parse {d['parse']} rules {d['rules'].get('exact')} "
                  f"{time.time() - t0:.0f} s", flush=True)
        rt.close()
        report["runs"][quant] = {"per_subject": {str(s[0]): json.loads(
            (args.out / f"heldout-{s[0]}-{quant}.json").read_text())["model_agreement"] for s in subjects},
            "pooled": pooled(results)}
    (args.out / "heldout-summary.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
