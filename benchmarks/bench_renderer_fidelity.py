"""Fidelity of our SleepVLM epoch image to the authors' own renderer, epoch by epoch.

The authors' renderer is not part of this project: pass the path of a local copy of their
``renderer.py`` (github.com/Deng-GuiFeng/SleepVLM, ``sleepvlm/data/renderer.py``). This script
imports it from that path, lets it do what it did for training (``preprocess_signals`` on the
WHOLE recording, then ``_render_single_epoch`` writes a PNG, read back here as RGB), renders the
same epochs with ``render.render_epoch`` from the windows the workstation reads
(``epoch_window_span``), and prints per epoch:

- SSIM of the two RGB images (skimage ``structural_similarity``, channel_axis=2,
  data_range=255, default 7 x 7 window: the same call on both, as tests/signals/test_render.py does),
- the largest per-pixel difference (max over rows, columns and R/G/B, 0..255),
- two diagnostics that split a difference into its halves: ``cond uV``, the largest
  difference between the two pipelines' conditioned 100-Hz samples, and ``draw SSIM``, the
  SSIM of the authors' image against ``draw_epoch`` of THEIR conditioned samples (drawing only).

Epochs:
(a) real single-EEG excerpts of the DREAMS dev set (../shared/data/dreams-dev; evaluation
    only, nothing converted from them is written anywhere). The workstation puts such a channel
    in the C4-M1 role and draws the other five bands empty. The authors' function, given one
    channel, instead lays out ONE band over the whole image height; the closest like-for-like
    input is therefore all six channels, the five absent ones as NaN (their filters and
    interpolation keep NaN, matplotlib draws nothing for it): that is the scored comparison.
    The authors' one-band layout is reported on one line for the record.
(b) generated nights (``synth.generate_night``, 0.5 h, all six roles) at 50, 100, 200, 256 Hz.

Run: .venv/bin/python benchmarks/bench_renderer_fidelity.py --authors-renderer /path/renderer.py
         [--data ../shared/data/dreams-dev] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import importlib.util
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from sleepvlm_ws.core.signals.montage import ROLES
from sleepvlm_ws.core.signals.render import (RENDERER_VERSION, EpochWindow, condition_epoch, draw_epoch,
                                             render_epoch)
from sleepvlm_ws.core.synth import generate_night

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "dreams-dev"
AUTHOR_NAMES = {"F4-M1": "F4", "C4-M1": "C4", "O2-M1": "O2", "LOC": "LOC", "ROC": "ROC", "CHIN": "Chin"}
DREAMS_RATES = {1: 100.0, 2: 200.0, 3: 50.0, 4: 200.0}
DREAMS_EPOCHS = (0, 13, 29, 44, 59)            # fixed: first, three inside, last (60 per excerpt)
SYNTH_RATES = (50.0, 100.0, 200.0, 256.0)
SYNTH_EPOCHS = (0, 7, 19, 31, 43, 52, 59)      # of the 60 in half an hour
SYNTH_SEED = 3
TARGET = 0.99


def load_authors(path: Path):
    spec = importlib.util.spec_from_file_location("sleepvlm_authors_renderer", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("preprocess_signals", "_render_single_epoch", "CHANNEL_ORDER"):
        if not hasattr(module, name):
            raise SystemExit(f"{path}: has no {name} (not the SleepVLM renderer?)")
    return module


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Authors:
    """The authors' pipeline on a whole recording: their preprocessing, their figure as PNG."""

    def __init__(self, module, folder: Path):
        self.module = module
        self.folder = folder
        self.warnings: list[str] = []

    def preprocess(self, signals: dict[str, tuple[np.ndarray, float]]) -> dict[str, np.ndarray]:
        sig_dict = {AUTHOR_NAMES[r]: {"sample_rate": fs, "data": np.asarray(x, dtype=np.float64)}
                    for r, (x, fs) in signals.items()}
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            processed = self.module.preprocess_signals(sig_dict)
        self.warnings += sorted({line.strip() for line in out.getvalue().splitlines() if line.strip()})
        return processed

    def render(self, processed: dict[str, np.ndarray], epoch: int) -> np.ndarray:
        names = [ch for ch in self.module.CHANNEL_ORDER if ch in processed]
        matrix = np.stack([processed[ch][epoch] for ch in names], axis=1)
        path = self.folder / f"{epoch}.png"
        self.module._render_single_epoch(matrix, names, str(path))
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("nan")
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def compare(authors: Authors, signals, epochs, label: str, rows: list, out):
    """Render ``epochs`` both ways; ``signals``: role -> (uV, fs) or None (absent)."""
    present = {r: e for r, e in signals.items() if e is not None}
    # the authors' input: absent roles as NaN of the same length (six bands, empty ones drawn empty)
    some_x, some_fs = next(iter(present.values()))
    fed = {r: (present[r] if r in present else (np.full(some_x.size, np.nan), some_fs)) for r in ROLES}
    processed = authors.preprocess(fed)
    for epoch in epochs:
        theirs = authors.render(processed, epoch)
        window = EpochWindow.around(signals, epoch)
        ours_traces = condition_epoch(window)
        ours = draw_epoch(ours_traces)
        assert np.array_equal(ours, render_epoch(window))
        their_traces = {r: processed[AUTHOR_NAMES[r]][epoch] for r in ROLES if r in present}
        cond = max(float(np.nanmax(np.abs(ours_traces[r] - their_traces[r]))) for r in their_traces)
        draw_only = ssim(theirs, draw_epoch(their_traces))
        score = ssim(theirs, ours)
        diff = int(np.abs(theirs.astype(int) - ours.astype(int)).max()) if theirs.shape == ours.shape else -1
        rows.append((label, epoch, score, diff))
        print(f"{label:<22} {epoch:>5} | {score:>6.4f} | {diff:>8} | {cond:>8.3g} | {draw_only:>9.4f}"
              + ("" if theirs.shape == ours.shape else f"  (authors' image is {theirs.shape})"), file=out)
    return processed


def read_dreams(path: Path) -> tuple[str, np.ndarray]:
    with open(path) as f:
        channel = f.readline().strip().strip("[]")
        x = np.loadtxt(f, dtype=np.float64)
    return channel, x


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors-renderer", required=True, type=Path,
                        help="path of a local copy of the authors' sleepvlm/data/renderer.py")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the dreams-dev folder")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    module = load_authors(args.authors_renderer)
    buffer = io.StringIO()

    class Tee:
        def write(self, s):
            sys.stdout.write(s)
            buffer.write(s)

        def flush(self):
            sys.stdout.flush()

    out = Tee()
    u = platform.uname()
    digest = hashlib.sha256(args.authors_renderer.read_bytes()).hexdigest()
    print("SleepVLM renderer fidelity: ours (render.render_epoch) vs the authors' renderer", file=out)
    print(f"machine: {u.system} {u.release} {u.machine}, {os.cpu_count()} CPUs, python {platform.python_version()}",
          file=out)
    print(f"commit: {git_commit()}   renderer: {RENDERER_VERSION}", file=out)
    print(f"date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}", file=out)
    print(f"authors' renderer: {args.authors_renderer.resolve()} sha256 {digest}", file=out)
    print("SSIM: RGB, skimage structural_similarity(channel_axis=2, data_range=255), same call both ways;"
          " max diff: largest |ours - theirs| over pixels and R/G/B (0..255)", file=out)
    print("cond uV: max |our conditioned samples - theirs| in the epoch; draw SSIM: theirs vs our drawing"
          " of THEIR conditioned samples\n", file=out)
    header = f"{'input':<22} {'epoch':>5} | {'SSIM':>6} | {'max diff':>8} | {'cond uV':>8} | {'draw SSIM':>9}"
    rows: list = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="svlm-fidelity-") as tmp:
        authors = Authors(module, Path(tmp))

        print("(a) DREAMS dev-set excerpts: one real EEG channel in the C4-M1 role, other roles absent", file=out)
        files = [args.data / f"excerpt{k}.txt" for k in DREAMS_RATES]
        if not args.data.is_dir() or not all(f.is_file() for f in files):
            print(f"SKIPPED: {args.data} (excerpt1-4.txt) is not here\n", file=out)
        else:
            print(header, file=out)
            print("-" * len(header), file=out)
            for k, fs in DREAMS_RATES.items():
                channel, x = read_dreams(args.data / f"excerpt{k}.txt")
                signals = {r: ((x, fs) if r == "C4-M1" else None) for r in ROLES}
                compare(authors, signals, DREAMS_EPOCHS, f"excerpt{k} {channel} {fs:g}Hz",
                        rows, out)
            # for the record: what the authors' function does with one channel on its own
            channel, x = read_dreams(args.data / "excerpt1.txt")
            lone = authors.preprocess({"C4-M1": (x, 100.0)})
            theirs = authors.render(lone, 29)
            ours = render_epoch(EpochWindow.around({"C4-M1": (x, 100.0)}, 29))
            print(f"(the authors' function given only that channel draws ONE band over the full height:"
                  f" excerpt1 epoch 29 vs ours SSIM {ssim(theirs, ours):.4f}; not counted above)\n", file=out)

        print("(b) generated nights: synth.generate_night(seed=%d, hours=0.5, fs), all six roles" % SYNTH_SEED,
              file=out)
        print(header, file=out)
        print("-" * len(header), file=out)
        for fs in SYNTH_RATES:
            night = generate_night(seed=SYNTH_SEED, hours=0.5, fs=fs)
            signals = {r: (np.asarray(night.signals[r], dtype=np.float64), fs) for r in ROLES}
            compare(authors, signals, [e for e in SYNTH_EPOCHS if e < len(night.stages)],
                    f"synth {fs:g}Hz", rows, out)

    scores = np.array([r[2] for r in rows])
    print(f"\nepochs: {len(rows)} ({sum(1 for r in rows if r[0].startswith('excerpt'))} dev-set,"
          f" {sum(1 for r in rows if r[0].startswith('synth'))} generated)", file=out)
    for name, pick in (("dev set", "excerpt"), ("generated", "synth"), ("all", "")):
        part = np.array([r[2] for r in rows if r[0].startswith(pick)])
        diffs = [r[3] for r in rows if r[0].startswith(pick)]
        if part.size:
            print(f"{name:>10}: SSIM min {np.nanmin(part):.4f} mean {np.nanmean(part):.4f};"
                  f" max per-pixel difference {max(diffs)}", file=out)
    below = [(r[0], r[1], r[2]) for r in rows if not r[2] >= TARGET]
    print(f"target SSIM >= {TARGET} on every epoch: {'MET' if not below else f'NOT met on {len(below)}'}", file=out)
    for label, epoch, score in below:
        print(f"  below: {label} epoch {epoch}: {score:.4f}", file=out)
    if authors.warnings:
        print("the authors' pipeline printed: " + "; ".join(sorted(set(authors.warnings))), file=out)
    print(f"({time.perf_counter() - started:.0f} s)", file=out)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(buffer.getvalue())
    return 0 if scores.size and (scores >= TARGET).all() else 1


if __name__ == "__main__":
    sys.exit(main())
