"""The workstation spine on a full clinical night: open, page, render, memory.

Writes (once, cached in a temporary folder or the folder given) an 8-hour, 20-channel, 256-Hz
EDF+: the six SleepVLM roles from the synthetic generator plus 14 further channels (other EEG
leads, ECG, legs, respiration). Then, in a fresh Python process with Qt offscreen, measures:

- time to first epoch on screen: open the recording through the main window (study created in
  the loader thread) until the first epoch has been drawn, and the cold start of the app;
- time to page one epoch: PgDn key press to the waveform and hypnogram updated and painted;
- renderer epochs/s: SleepVLM images of consecutive epochs, reading from the EDF, one core;
- peak RSS of that process.

Targets (issue 2): first epoch <= 2 s, page <= 50 ms, renderer >= 100 epochs/s, RSS <= 1 GB.
Run: .venv/bin/python benchmarks/bench_spine.py [folder]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np

EXTRA = ["EEG F3-M2", "EEG C3-M2", "EEG O1-M2", "EEG Fz-Cz", "EEG Cz-Pz", "ECG II", "Leg L", "Leg R",
         "Flow", "Thor", "Abdo", "Snore", "Pos", "Pleth"]


def write_study_edf(path: Path, hours: float = 8.0, fs: float = 256.0) -> Path:
    import pyedflib

    from sleepvlm_ws.core.synth import generate_night
    from sleepvlm_ws.core.synth.night import EDF_LABELS

    night = generate_night(seed=5, hours=hours, fs=fs)
    rng = np.random.default_rng(1)
    labels = [EDF_LABELS[r] for r in EDF_LABELS] + EXTRA
    header = dict(dimension="uV", sample_frequency=fs, physical_min=-3276.7, physical_max=3276.7,
                  digital_min=-32767, digital_max=32767, transducer="", prefilter="")
    w = pyedflib.EdfWriter(str(path), len(labels), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        w.setSignalHeaders([dict(header, label=lab) for lab in labels])
        w.setStartdatetime(datetime(2026, 3, 2, 22, 15, 0))
        n = len(night.stages) * int(30 * fs)
        hour = int(3600 * fs)
        for a in range(0, n, hour):  # one hour at a time keeps the writer's memory small
            b = min(n, a + hour)
            block = [np.clip(night.signals[r][a:b], -3276, 3276).astype(np.float64) for r in EDF_LABELS]
            block += [20 * rng.standard_normal(b - a) for _ in EXTRA]
            w.writeSamples(block)
    finally:
        w.close()
    return path


PROBE = r"""
import json, os, sys, time
t_start = time.perf_counter()
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from sleepvlm_ws.ui.main_window import MainWindow
app = QApplication([])
window = MainWindow("bench")
window.resize(1600, 1000)
window.show()
app.processEvents()
t_ready = time.perf_counter()

loaded = []
window.loader.loaded.connect(lambda s: loaded.append(time.perf_counter()))
t0 = time.perf_counter()
window.open_recording(sys.argv[1], sys.argv[2])
while not loaded:
    app.processEvents()
    time.sleep(0.001)
app.processEvents()
window.repaint()
app.processEvents()
t_first = time.perf_counter() - t0

from PySide6.QtTest import QTest
pages = []
for _ in range(60):
    t = time.perf_counter()
    QTest.keyClick(window, Qt.Key_PageDown)
    app.processEvents()
    window.repaint()
    pages.append(time.perf_counter() - t)

from sleepvlm_ws.core.signals.montage import read_role
from sleepvlm_ws.core.signals.render import PAD_S, EpochWindow, epoch_window_span, render_epoch
session = window.session
rec, montage = session.recording, session.montage
t = time.perf_counter()
n_render = 200
for e in range(100, 100 + n_render):
    span = epoch_window_span(e, rec.duration_s, PAD_S)
    sig = {r: (read_role(rec, d, span.start_s, span.stop_s) if d else None) for r, d in montage.roles.items()}
    render_epoch(EpochWindow(sig, PAD_S, span.pad_before_s, span.pad_after_s))
render_rate = n_render / (time.perf_counter() - t)
rss = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps(dict(cold_start=t_ready - t_start, first_epoch=t_first,
                      page_median=sorted(pages)[len(pages) // 2], page_p90=sorted(pages)[int(len(pages) * 0.9)],
                      render_rate=render_rate, rss_mb=rss, channels=len(rec.channels),
                      epochs=rec.n_epochs, backend=rec.backend)))
window.close()
"""


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.gettempdir()) / "sleepvlm-bench"
    folder.mkdir(parents=True, exist_ok=True)
    edf = folder / "night-8h-20ch-256hz.edf"
    if not edf.exists():
        print(f"writing {edf} ...", file=sys.stderr)
        write_study_edf(edf)
    study = folder / "bench.sleepvlm"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{study}{suffix}").unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", PROBE, str(edf), str(study)], capture_output=True,
                         text=True, env=env, timeout=600)
    if out.returncode != 0:
        sys.exit(out.stderr)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    size_mb = edf.stat().st_size / 2**20
    print(f"8-h night, {r['channels']} channels, 256 Hz, {r['epochs']} epochs, {size_mb:.0f} MB EDF+ "
          f"(read with {r['backend']}); machine: {os.cpu_count()} cores")
    rows = [
        ("app cold start (imports, window shown)", f"{r['cold_start']:.2f} s", "-"),
        ("time to first epoch on screen", f"{r['first_epoch']:.2f} s", "<= 2 s"),
        ("page one epoch (median)", f"{r['page_median'] * 1000:.0f} ms", "<= 50 ms"),
        ("page one epoch (90th percentile)", f"{r['page_p90'] * 1000:.0f} ms", "-"),
        ("renderer, epochs/s (EDF read + condition + draw)", f"{r['render_rate']:.0f}", ">= 100"),
        ("peak RSS", f"{r['rss_mb']:.0f} MB", "<= 1024 MB"),
    ]
    w = max(len(a) for a, _, _ in rows)
    print(f"{'measure':<{w}}  {'measured':>10}  target")
    for a, b, c in rows:
        print(f"{a:<{w}}  {b:>10}  {c}")


if __name__ == "__main__":
    main()
