"""Calibration of a pack's stage probabilities: expected calibration error and the reliability table.

Each epoch's suggestion carries the model's probability for the stage it suggested
(``core.model.stage_confidence``: read from the token probabilities under the answer grammar, stored in
the study); against the reference hypnogram it is right or wrong. ``core.trust.calibration`` bins the
confidences in equal-width bins and prints, per recording and pooled: epochs, accuracy, mean
confidence, ECE, MCE, the multi-class Brier score, the reliability table, how many suggestions
fall below the review queue's ``MODEL_LOW_CONFIDENCE`` and how right they are, and how often the
suggested (greedy) stage is not the most probable of the five.

Generated nights: held-out generator seeds (default 9101, full six-role montage at 256 Hz, and
9104, a single central EEG C3-A1 at 100 Hz, as in the default pack's model card), ``--hours``
each, written as EDF+ with their hypnogram in a temporary folder (by a child process: opening an
EDF that this process wrote can make pyedflib read zeros, see models/training/evaluate_heldout.py)
and scored through ``core.pipeline.evaluate.evaluate_recording`` (ScoringRun, fast pass, the answer grammar).

``--dev`` also scores the DREAMS dev excerpts (``--data``, default ../shared/data/dreams-dev;
real EEG, expert R&K stages mapped to AASM, licence CC BY-NC-ND: evaluation only, nothing
converted is kept). Looking at the dev set tunes to it, so every ``--dev`` run appends one line
to docs/measurements/dreams-dev-evaluations.md (date UTC, commit, "bench_calibration", packs,
epochs) before it prints the dev figures.

Run:  .venv/bin/python benchmarks/bench_calibration.py [--pack DIR] [--seeds 9101 9104]
          [--hours 1.5] [--bins 10] [--plot PATH.png] [--dev] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

try:  # llama_cpp before scipy: the CUDA build on the GPU image segfaults at load otherwise
    import llama_cpp  # noqa: F401
except ImportError:
    pass

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "app") not in sys.path:
    sys.path.insert(0, str(ROOT / "app"))

DEFAULT_PACK = ROOT / "models" / "default"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "dreams-dev"
LOG = ROOT / "docs" / "measurements" / "dreams-dev-evaluations.md"
LOG_HEADER = """# DREAMS dev-set evaluations (every look is counted)

| date (UTC) | commit | who / what | packs evaluated | epochs |
|---|---|---|---|---|
"""
# seed -> (sampling rate, EDF labels kept (role -> label; None: all six roles), what)
SUBJECTS = {
    9101: (256.0, None, "full montage, 256 Hz"),
    9102: (200.0, None, "full montage, 200 Hz"),
    9103: (100.0, None, "full montage, 100 Hz"),
    9104: (100.0, {"C4-M1": "EEG C3-A1"}, "one channel (C3-A1), 100 Hz"),
    9105: (50.0, None, "full montage, 50 Hz"),
}


# ------------------------------------------------------------------------------ provenance
def _run(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit() -> str:
    """``git rev-parse --short HEAD`` plus ``-dirty`` when the tree has changes."""
    head = _run(["git", "rev-parse", "--short", "HEAD"])
    if head is None:
        return "unknown (not a git checkout)"
    return head + ("-dirty" if _run(["git", "status", "--porcelain"]) else "")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores; {platform.system()} {platform.release()}; " \
           f"Python {platform.python_version()}"


# ------------------------------------------------------------------------------ recordings
def write_subject(seed: int, hours: float, out: Path) -> None:
    """The generated night as EDF+ with its hypnogram as annotations (child process)."""
    import numpy as np
    import pyedflib

    from sleepvlm_ws.core.base.hypnogram import Hypnogram
    from sleepvlm_ws.core.study.formats.edf_plus import LABELS
    from sleepvlm_ws.core.synth.night import EDF_LABELS, generate_night

    fs, labels, _what = SUBJECTS[seed]
    night = generate_night(seed=seed, hours=hours, fs=fs)
    labels = labels or EDF_LABELS
    w = pyedflib.EdfWriter(str(out), len(labels), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        w.setSignalHeaders([{"label": lab, "dimension": "uV", "sample_frequency": fs,
                             "physical_min": -3276.7, "physical_max": 3276.7,
                             "digital_min": -32767, "digital_max": 32767}
                            for lab in labels.values()])
        w.writeSamples([np.clip(night.signals[r], -3276.7, 3276.7).astype(np.float64)
                        for r in labels])
        for onset, duration, stage in Hypnogram(stages=list(night.stages)).segments():
            w.writeAnnotation(onset, duration, LABELS[stage])
    finally:
        w.close()


# ------------------------------------------------------------------------------ scoring
def score(recording: Path, reference: Path, runtime, study: Path) -> tuple[list, float]:
    """(rows, seconds): one row per epoch with a reference sleep stage and a suggestion:
    (reference Stage, suggested Stage or None, the suggestion's probability or None, five)."""
    from sleepvlm_ws.cli.common import Progress as _Progress
    from sleepvlm_ws.core.base.stages import Stage
    from sleepvlm_ws.core.pipeline.evaluate import evaluate_recording
    from sleepvlm_ws.core.signals.render import RENDERER_VERSION
    from sleepvlm_ws.core.study.study import Study
    from sleepvlm_ws.core.study.suggestions import FAST, SuggestionKey, SuggestionStore

    bar = _Progress(recording.name)
    try:
        result = evaluate_recording(recording, reference, runtime, study_path=study,
                                    with_yasa=False, with_rules=False, progress=bar,
                                    scorer="bench_calibration")
    finally:
        bar.close()
    rows = []
    with Study.open(study) as s:
        store = SuggestionStore(s)
        for e in result.epochs:
            if e["reference"] is None:
                continue
            sug = store.get_pass(e["index"], SuggestionKey(
                runtime.model_id, getattr(runtime, "renderer_version", RENDERER_VERSION), FAST))
            if sug is None:
                continue
            rows.append((Stage(e["reference"]), sug.stage, sug.stage_probability,
                         sug.stage_probabilities))
    return rows, float(result.seconds.get("scoring", 0.0))


def report(title: str, rows: list, n_bins: int) -> tuple[list[str], object]:
    """Printed lines for ``rows`` and the Calibration (None when no row has a probability)."""
    from sleepvlm_ws.core.review.review_queue import MODEL_LOW_CONFIDENCE
    from sleepvlm_ws.core.trust.calibration import calibrate, format_table

    known = [r for r in rows if r[2] is not None]
    no_stage = sum(1 for r in rows if r[1] is None)
    lines = [f"## {title}", ""]
    lines.append(f"epochs with a reference stage and a suggestion: {len(rows)}; with a probability: "
                 f"{len(known)}; no probability: {len(rows) - len(known)} (of which no stage: "
                 f"{no_stage})")
    if not known:
        return lines + [""], None
    conf = [r[2] for r in known]
    right = [r[1] is r[0] for r in known]
    cal = calibrate(conf, right, probabilities=[r[3] for r in known], truth=[r[0] for r in known],
                    n_bins=n_bins)
    not_top = sum(1 for r in known if max(r[3], key=r[3].get) is not r[1])
    lines += [
        f"accuracy {cal.accuracy:.3f}; mean confidence {cal.mean_confidence:.3f}; "
        f"ECE ({n_bins} equal-width bins) {cal.ece:.4f}; MCE {cal.mce:.4f}; "
        f"Brier (5 stages) {cal.brier:.4f}",
        f"suggested stage not the most probable of the five: {not_top} of {len(known)}",
        "", format_table(cal), "",
        "| flag when the probability is below | epochs flagged | their accuracy | "
        "accuracy of the rest |", "| --- | ---: | ---: | ---: |"]
    for t in sorted({0.5, 0.7, 0.8, 0.9, 0.95, MODEL_LOW_CONFIDENCE}):
        low = [ok for c, ok in zip(conf, right) if c < t]
        high = [ok for c, ok in zip(conf, right) if c >= t]
        mark = " (the review queue's MODEL_LOW_CONFIDENCE)" if t == MODEL_LOW_CONFIDENCE else ""
        lines.append(f"| {t:.2f}{mark} | {len(low)} ({len(low) / len(conf):.0%}) | {_share(low)} "
                     f"| {_share(high)} |")
    return lines + [""], cal


def _share(flags: list[bool]) -> str:
    return f"{sum(flags) / len(flags):.3f}" if flags else "-"


def plot(panels: list[tuple[str, object]], path: Path) -> None:
    """A reliability diagram per calibration (accuracy per bin against the diagonal, the
    count of each bin below), saved as PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 5.6), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]})
    for k, (title, cal) in enumerate(panels):
        ax, hist = axes[0][k], axes[1][k]
        width = cal.bins[0].upper - cal.bins[0].lower
        mids = [(b.lower + b.upper) / 2 for b in cal.bins]
        ax.plot([0, 1], [0, 1], color="#909090", lw=1, ls="--", label="calibrated")
        ax.bar([m for m, b in zip(mids, cal.bins) if b.count],
               [b.accuracy for b in cal.bins if b.count], width=width * 0.9, color="#4a7bb7",
               edgecolor="#2a4b77", label="accuracy")
        ax.plot([b.mean_confidence for b in cal.bins if b.count],
                [b.accuracy for b in cal.bins if b.count], "o", color="#d04040", ms=4,
                label="(mean confidence, accuracy)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}\nn={cal.n}, ECE {cal.ece:.3f}", fontsize=9)
        ax.legend(fontsize=7, loc="center left")
        hist.bar(mids, [b.count for b in cal.bins], width=width * 0.9, color="#a0a0a0")
        hist.set_yscale("log")
        hist.set_ylim(bottom=0.8)
        hist.set_xlim(0, 1)
        hist.set_xlabel("model's probability for its suggested stage")
        hist.set_ylabel("epochs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def append_log(commit: str, packs: str, epochs: str, when: datetime) -> None:
    if not LOG.is_file():
        LOG.parent.mkdir(parents=True, exist_ok=True)
        LOG.write_text(LOG_HEADER, encoding="utf-8")
    cells = [when.strftime("%Y-%m-%d %H:%M"), commit, "bench_calibration (stage-probability "
             "calibration)", packs, epochs]
    line = "| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |\n"
    text = LOG.read_text(encoding="utf-8")
    with open(LOG, "a", encoding="utf-8") as fh:
        if text and not text.endswith("\n"):
            fh.write("\n")
        fh.write(line)


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", type=Path, default=DEFAULT_PACK)
    parser.add_argument("--seeds", type=int, nargs="*", default=[9101, 9104],
                        choices=sorted(SUBJECTS), help="held-out generator seeds")
    parser.add_argument("--hours", type=float, default=1.5)
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--plot", type=Path, help="save a reliability diagram here (PNG)")
    parser.add_argument("--dev", action="store_true", help="also the DREAMS dev excerpts (logged)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--write-subject", nargs=3, metavar=("SEED", "HOURS", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_subject:
        seed, hours, out = args.write_subject
        write_subject(int(seed), float(hours), Path(out))
        return 0

    import llama_cpp as llama

    from sleepvlm_ws.core.model.model_pack import verify_pack
    from sleepvlm_ws.core.model.runtime import LocalRuntime

    manifest = verify_pack(args.pack)
    when = datetime.now(timezone.utc)
    commit = git_commit()
    runtime = LocalRuntime(args.pack, n_threads=args.threads)
    header = ["# Calibration of the model's stage probabilities (bench_calibration.py)", "",
              f"date: {when.strftime('%Y-%m-%d %H:%M:%S')} UTC",
              f"commit: {commit}",
              f"machine: {machine()}; llama.cpp threads {runtime.n_threads}; "
              f"llama-cpp-python {llama.__version__}",
              f"pack: {manifest.label} at {args.pack}; lm sha256 {runtime.model_id[:12]}",
              "confidence: the stored probability of the suggested stage (fast pass, answer "
              "grammar; core/model/stage_confidence.py)",
              "generator: core/synth of this tree ("
              + ("changed since HEAD: not the generator the pack was trained on"
                 if _run(["git", "status", "--porcelain", "app/sleepvlm_ws/core/synth"])
                 else "as committed") + ")", ""]
    print("\n".join(header), flush=True)
    pooled, panels, timing = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-calibration-") as tmp:
        tmp = Path(tmp)
        for seed in args.seeds:
            edf = tmp / f"heldout-{seed}.edf"
            subprocess.run([sys.executable, __file__, "--write-subject", str(seed),
                            str(args.hours), str(edf)], check=True)
            rows, seconds = score(edf, edf, runtime, tmp / f"{seed}.sleepvlm")
            timing.append((f"seed {seed}", len(rows), seconds))
            lines, cal = report(f"generated night, seed {seed} ({SUBJECTS[seed][2]}, "
                                f"{args.hours:g} h)", rows, args.bins)
            print("\n".join(lines), flush=True)
            pooled += rows
        if args.seeds:
            lines, cal = report(f"generated nights pooled (seeds {', '.join(map(str, args.seeds))})",
                                pooled, args.bins)
            print("\n".join(lines), flush=True)
            if cal is not None:
                panels.append((f"generated, seeds {', '.join(map(str, args.seeds))}", cal))

        if args.dev:
            from sleepvlm_ws.core.pipeline.evaluate import find_scored_studies, is_dreams_recording

            pairs = ([(r, h) for r, h in find_scored_studies(args.data) if is_dreams_recording(r)]
                     if args.data.is_dir() else [])
            if not pairs:
                print(f"--dev: no DREAMS dev set at {args.data}: skipped")
            else:
                per, dev = [], []
                for rec, hyp in pairs:
                    rows, seconds = score(rec, hyp, runtime, tmp / f"dev-{rec.stem}.sleepvlm")
                    timing.append((rec.name, len(rows), seconds))
                    per.append((rec.name, rows))
                    dev += rows
                # the dev figures exist now: count this look before showing them
                append_log(commit, f"{manifest.label} (lm {runtime.model_id[:12]})",
                           f"{len(dev)} ({', '.join(name for name, _ in per)})", when)
                for name, rows in per:
                    print("\n".join(report(f"DREAMS dev {name}", rows, args.bins)[0]), flush=True)
                lines, cal = report("DREAMS dev pooled", dev, args.bins)
                print("\n".join(lines), flush=True)
                if cal is not None:
                    panels.append(("DREAMS dev (real EEG)", cal))
    runtime.close()
    for what, n, seconds in timing:
        print(f"time: {what}: {n} epochs scored in {seconds:.0f} s"
              + (f" ({n / seconds:.2f} epochs/s)" if seconds else ""))
    if args.plot and panels:
        plot(panels, args.plot)
        print(f"reliability diagram: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
