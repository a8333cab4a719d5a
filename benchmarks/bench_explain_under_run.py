"""Benchmark: how long Explain takes for the epoch on screen while the night is being scored.

Drives the real main window (offscreen Qt) as a technologist does: a generated night is opened,
the pack is loaded and Score night starts (with the second opinion, as the GUI does); then,
every ``--every`` seconds, the window goes to an epoch and presses Explain, and the time until
the panel shows that epoch's rationale is taken. The same is measured with no run going (the
cost of one rationale alone) and, with ``--load N``, with N busy processes beside it (a
workstation doing other things). The run's own pace is printed beside the latencies.

Run:  .venv/bin/python benchmarks/bench_explain_under_run.py [--pack models/default]
          [--hours 2] [--explains 10] [--every 2] [--load 0 1] [--save FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "app") not in sys.path:
    sys.path.insert(0, str(ROOT / "app"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from provenance import git_commit  # noqa: E402

TIMEOUT_S = 180.0


def _busy() -> None:            # one CPU-bound process: "other jobs on the machine"
    while True:
        pass


def _wait(app, condition, timeout: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        app.processEvents()
        time.sleep(0.002)
    return True


class _Bench:
    def __init__(self, app, window):
        self.app, self.window = app, window
        self.explained: dict[int, float] = {}
        self.done = 0
        window.ai.controller.explained.connect(self._on_explained)
        window.ai.controller.progress.connect(self._on_progress)

    def _on_explained(self, epoch: int, _problem: str) -> None:
        self.explained[epoch] = time.perf_counter()

    def _on_progress(self, done: int, _total: int, _eta) -> None:
        self.done = done

    def explain(self, epoch: int) -> tuple[float, float, float] | None:
        """(seconds to the answer stored, to the panel showing it, the model's own seconds for
        it); None if refused."""
        window = self.window
        window.go_to(epoch)
        self.app.processEvents()
        self.second_opinion_running = window.review.running
        t0 = time.perf_counter()
        if not window.ai.explain():
            return None
        shown = _wait(self.app, lambda: epoch in self.explained and _panel_has_rationale(window))
        if not shown:
            raise SystemExit(f"epoch {epoch + 1}: no rationale on screen after {TIMEOUT_S:.0f} s")
        shown_s = time.perf_counter() - t0
        model_s = window.ai.panel.suggestion.seconds or 0.0
        return self.explained[epoch] - t0, shown_s, model_s


def _panel_has_rationale(window) -> bool:
    suggestion = window.ai.panel.suggestion
    return (suggestion is not None and suggestion.rationale is not None
            and not window.ai.panel.explaining)


def _row(name: str, latencies: list[tuple[float, float, float]], pace: str, note: str) -> str:
    stored = sorted(a for a, _, _ in latencies)
    shown = sorted(b for _, b, _ in latencies)
    model = sorted(c for _, _, c in latencies)
    p90 = shown[min(len(shown) - 1, int(round(0.9 * (len(shown) - 1))))]
    return (f"| {name:<36} | {len(shown):>3} | {statistics.median(model):7.2f} | "
            f"{statistics.median(stored):8.2f} | {statistics.median(shown):7.2f} | {p90:6.2f} | "
            f"{max(shown):6.2f} | {pace:>12} | {note} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default=str(ROOT / "models" / "default"))
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--explains", type=int, default=10, help="Explains per condition")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between Explains")
    parser.add_argument("--load", type=int, nargs="*", default=[0, 1],
                        help="busy processes beside the window, one condition each")
    parser.add_argument("--threads", type=int, default=0,
                        help="the model's threads (the settings' value; 0: the default, all cores)")
    parser.add_argument("--save", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-explain-"))
    os.environ["SLEEPVLM_WS_HOME"] = str(work / "home")      # default settings, no recents
    from PySide6.QtWidgets import QApplication

    from sleepvlm_ws.core.model.settings import ModelSettings, load_settings, save_settings
    from sleepvlm_ws.core.synth.night import generate_night, write_night_edf
    from sleepvlm_ws.ui.main_window import MainWindow

    if args.threads:
        save_settings(dataclasses.replace(ModelSettings.defaults(), threads=args.threads))
    threads = load_settings().threads
    app = QApplication.instance() or QApplication([])
    rng = random.Random(7)
    lines = [f"Explain for the epoch on screen, pressed in the real window (offscreen Qt), "
             f"{args.explains} per condition, one every {args.every:g} s",
             f"  pack: {args.pack}",
             f"  night: generated, {args.hours:g} h; run: Score night (fast pass) with the "
             f"second opinion; the model on {threads} thread(s), other settings the defaults",
             f"  machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical "
             f"cores; Python {platform.python_version()}; commit {git_commit()}",
             f"  load average at start: {os.getloadavg()[0]:.1f}", "",
             "| condition                            |   n | model s | stored s | shown s | p90 s  | "
             "max s  | run epochs/s | note |",
             "|--------------------------------------|-----|---------|----------|---------|--------|"
             "--------|--------------|------|"]
    for i, load in enumerate(args.load):
        edf = write_night_edf(generate_night(seed=11 + i, hours=args.hours), work / f"night{i}.edf")
        window = MainWindow(scorer="bench")
        window.resize(1400, 900)
        window.show()
        bench = _Bench(app, window)
        window.load_model(args.pack)
        window.open_recording(edf)
        if not _wait(app, lambda: window.session is not None and window.ai.controller.has_model):
            raise SystemExit(f"{edf}: the window did not open the night with the model")
        n = window.session.n_epochs
        busy = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(load)]
        for p in busy:
            p.start()
        try:
            idle = []
            if i == 0:
                for epoch in rng.sample(range(n), args.explains):
                    idle.append(bench.explain(epoch))
                lines_idle = _row("no run going", [x for x in idle if x], "-", "the rationale alone")
            else:
                lines_idle = None
            if not window.ai.score_night():
                raise SystemExit("Score night did not start")
            t_start = time.perf_counter()
            under, beside, asked = [], [], set(bench.explained)
            while len(under) + len(beside) < args.explains and window.ai.controller.running:
                time.sleep(args.every)
                _wait(app, lambda: False, timeout=0.0)
                epoch = rng.choice([e for e in range(n) if e not in asked])
                asked.add(epoch)
                result = bench.explain(epoch)
                if result is not None:
                    (beside if bench.second_opinion_running else under).append(result)
            elapsed = time.perf_counter() - t_start
            pace = bench.done / elapsed
            if len(under) + len(beside) < args.explains:
                print(f"note: the run ended after {len(under) + len(beside)} Explains (a longer --hours gives more)",
                      file=sys.stderr)
            window.ai.cancel_run()
            _wait(app, lambda: not window.ai.controller.running)
        finally:
            for p in busy:
                p.terminate()
        if lines_idle:
            lines.append(lines_idle)
        others = f"{load} busy process" + ("es" if load != 1 else "")
        if beside:
            lines.append(_row(f"run + second opinion, {others}", beside, f"{pace:.2f}",
                              "YASA and the evidence measured beside the run"))
        if under:
            lines.append(_row(f"run, {others}", under, f"{pace:.2f}",
                              f"{bench.done} epochs scored in {elapsed:.0f} s"))
        window.close()
        app.processEvents()
    lines += ["", "model s: the model's own time for the rationale (median); stored s: Explain "
                  "pressed -> the rationale stored (the worker's signal); shown s: -> on the panel "
                  "(median, p90, max)."]
    text = "\n".join(lines)
    print(text)
    if args.save:
        args.save.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
