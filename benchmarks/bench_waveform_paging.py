"""Benchmark of paging the waveform view: one epoch forward, redraw, repeat.

Writes a 1-hour, 9-channel (six derived roles), 256-Hz EDF into a temporary folder, opens it
in a real MainWindow (offscreen, 1600 x 1000) and presses "next epoch" 100 times, each time
until the window has repainted. Prints the time per page (mean, median, 95th percentile),
split into fetch + filter + setData (WaveformView.show_epoch) and repaint.
Target: < 50 ms per epoch for 6 rows at 256 Hz.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_waveform_paging.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from edf_factory import sine, write_psg_edf  # noqa: E402

FS, SECONDS, PAGES = 256.0, 3600.0, 100
TONES = {"F4": 1.0, "C4": 12.0, "O2": 10.0, "M1": 5.0, "M2": 7.0, "E1": 2.0, "E2": 3.0,
         "Chin1": 40.0, "Chin2": 60.0}


def main() -> None:
    from PySide6.QtWidgets import QApplication

    from sleepvlm_ws.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        os.environ["SLEEPVLM_WS_HOME"] = folder
        path = write_psg_edf(Path(folder) / "bench.edf",
                             {k: sine(FS, SECONDS, f, 50.0) for k, f in TONES.items()}, FS)
        window = MainWindow("bench")
        window.resize(1600, 1000)
        window.show()
        window.open_recording(path)
        deadline = time.monotonic() + 30
        while window.session is None and time.monotonic() < deadline:
            app.processEvents()
        app.processEvents()
        compute, total = [], []
        view = window.waveform
        for _ in range(PAGES):
            t0 = time.perf_counter()
            window.step(1)                       # fetch, filter, setData (synchronous)
            t1 = time.perf_counter()
            view.canvas.viewport().repaint()     # draw now, as the screen would
            app.processEvents()
            t2 = time.perf_counter()
            compute.append((t1 - t0) * 1000)
            total.append((t2 - t0) * 1000)
        n_rows = len(view.rows)
        window.close()

    def line(name, values):
        values = sorted(values)
        p95 = values[int(0.95 * (len(values) - 1))]
        return (f"{name:<28} mean {statistics.mean(values):6.1f} ms   median "
                f"{statistics.median(values):6.1f} ms   p95 {p95:6.1f} ms")

    print(f"{PAGES} pages, {n_rows} rows, {FS:g} Hz, window 60 s, 1600x1000 offscreen")
    print(line("fetch + filter + setData", compute))
    print(line("page incl. repaint", total))


if __name__ == "__main__":
    main()
