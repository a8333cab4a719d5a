"""Benchmark of the whole-night scoring run: seconds per epoch, end to end.

Times ``ScoringRun`` on a synthetic night (read, condition, render each epoch once, request,
parse, commit each suggestion to the study), with the local runtime and, with ``--server``,
with llama-cpp-python's own server on loopback serving the same pack (``RemoteRuntime``;
the stock server re-reads the system prompt for every request).

Run:  .venv/bin/python benchmarks/bench_scoring_run.py --pack DIR [--epochs 40] [--server]
      (DIR: a model pack, e.g. the tests' tiny pack under .pytest_cache/d/sleepvlm-tiny-pack/)
The server needs llama-cpp-python's server extras (fastapi, uvicorn, sse-starlette,
starlette-context, pydantic-settings).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "app") not in sys.path:
    sys.path.insert(0, str(ROOT / "app"))


def _night(folder: Path, epochs: int, fs: float):
    from sleepvlm_ws.core.signals.montage import auto_montage
    from sleepvlm_ws.core.signals.recording import Recording
    from sleepvlm_ws.core.synth.night import generate_night, write_night_edf

    edf = write_night_edf(generate_night(seed=1, fs=fs, hours=epochs * 30 / 3600),
                          folder / "night.edf")
    rec = Recording.open(edf)
    return rec, auto_montage([c.label for c in rec.channels])


def _time_run(rec, montage, runtime, folder: Path, name: str) -> None:
    from sleepvlm_ws.core.pipeline.scoring_run import ScoringRun
    from sleepvlm_ws.core.study.study import Study

    study = folder / f"{name}.sleepvlm"
    Study.create(study, recording_path=rec.path, n_epochs=rec.n_epochs, montage=montage,
                 scorer="bench").close()
    t0 = time.perf_counter()
    summary = ScoringRun(rec, montage, study, runtime).run()
    wall = time.perf_counter() - t0
    model = summary.per_epoch_s() or float("nan")
    print(f"{name:<8} {rec.n_epochs:>4} epochs  {wall:7.1f} s  {wall / rec.n_epochs:6.2f} s/epoch "
          f"(model {model:.2f} s/epoch, {summary.images_rendered} images rendered)")


def _server(manifest, threads: int):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(manifest.lm_path),
         "--clip_model_path", str(manifest.mmproj_path), "--chat_format", "mtmd",
         "--n_ctx", str(manifest.context_size), "--n_threads", str(threads),
         "--host", "127.0.0.1", "--port", str(port), "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/v1/models", timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the llama-cpp-python server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", required=True)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--fs", type=float, default=256.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--server", action="store_true", help="also time RemoteRuntime")
    args = ap.parse_args()
    os.environ.setdefault("SLEEPVLM_WS_HOME", tempfile.mkdtemp(prefix="bench-home-"))

    from sleepvlm_ws.core.model.remote import RemoteRuntime
    from sleepvlm_ws.core.model.runtime import LocalRuntime

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rec, montage = _night(folder, args.epochs, args.fs)
        with LocalRuntime(args.pack, n_threads=args.threads) as local:
            _time_run(rec, montage, local, folder, "local")
            manifest = local.manifest
        if args.server:
            proc, base = _server(manifest, args.threads)
            try:
                remote = RemoteRuntime(base, system_prompt=manifest.system_prompt(),
                                       rule_ids=manifest.rule_vocabulary,
                                       renderer_version=manifest.renderer_version)
                _time_run(rec, montage, remote, folder, "remote")
            finally:
                proc.terminate()
                proc.wait(timeout=15)
        rec.close()


if __name__ == "__main__":
    main()
