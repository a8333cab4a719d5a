"""Throughput through an OpenAI-compatible server with parallel sequences (the lab-server path).

Starts llama.cpp's own server (``llama-server``, continuous batching, ``-np`` parallel slots) or
the workstation's own (``--own-server``: ``sleepvlm-ws serve``, whose counters it prints) on
127.0.0.1 with a model pack, or uses a server already running (``--url``), and drives it with
the workstation's own code, one of two ways (``--path``):

- ``client``: ``core.model.remote.RemoteRuntime`` from N threads, consecutive epochs of a synthetic
  night rendered beforehand (the server's throughput as the client sees it);
- ``scoring-run``: the whole workstation path, ``sleepvlm-ws score --server URL --parallel N``'s
  code (``ScoringRun(parallel=N)``): a synthetic night written as EDF+, read, rendered, asked,
  parsed and stored in a study file.

Full rationales (up to ``--rationale-tokens`` each) or fast answers (``--fast``). ``--server-args`` passes flags on to
llama-server (``-bs``: sampling on the GPU). Prints epochs/s beside SleepVLM's published 4.15
epochs/s (W4A16, vLLM batching, RTX 4090-class GPU) and, from the (first) server's log, the
median time per generated token of one sequence.

Run:  python benchmarks/bench_server.py --server-bin PATH/llama-server --pack DIR --parallel 8
      python benchmarks/bench_server.py --own-server --pack DIR --parallel 64 --no-grammar \
          --server-args="--gpu-sampling"
      python benchmarks/bench_server.py --url http://127.0.0.1:8080 --pack DIR --parallel 8
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

PAPER_EPOCHS_PER_S = 4.15
_EVAL_LINE = re.compile(r"\|\s+eval time =\s+([\d.]+) ms /\s+(\d+) tokens")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary: str | None, pack_dir: Path, parallel: int, ctx_per_slot: int, log: Path,
                 extra: list[str]) -> tuple:
    """llama-server (``binary``) or, with ``binary`` None, ``sleepvlm-ws serve`` (the
    workstation's own batched server) on a free port; all layers on the GPU."""
    from sleepvlm_ws.core.model.model_pack import verify_pack

    m = verify_pack(pack_dir, cache=False)
    port = free_port()
    if binary:
        cmd = [binary, "-m", str(m.lm_path), "--mmproj", str(m.mmproj_path),
               "--host", "127.0.0.1", "--port", str(port), "-np", str(parallel),
               "-c", str(ctx_per_slot * parallel), "-ngl", "999", "-fa", "on", *extra]
    else:
        cmd = [sys.executable, "-c", "import sys; from sleepvlm_ws.cli import main; "
               "sys.exit(main(sys.argv[1:]))", "serve", "--model", str(pack_dir),
               "--port", str(port), "--slots", str(parallel), "--ctx-per-slot", str(ctx_per_slot),
               "--gpu-layers", "-1", *extra]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT / "app") + os.pathsep
                                     + os.environ.get("PYTHONPATH", "")))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(1)
    proc.kill()
    sys.exit("the server did not become ready in 300 s")


def bench_stages(n: int) -> list:
    from sleepvlm_ws.core.base.stages import Stage

    cycle = [Stage.W] * 4 + [Stage.N1] * 3 + [Stage.N2] * 8 + [Stage.N3] * 6 + [Stage.R] * 6
    return (cycle * (n // len(cycle) + 1))[:n]


def epoch_images(n: int, fs: float = 256.0):
    from sleepvlm_ws.core.signals.render import PAD_S, EpochWindow, epoch_window_span, render_png
    from sleepvlm_ws.core.model.request import request_images
    from sleepvlm_ws.core.synth import generate_night

    stages = bench_stages(n + 2)
    night = generate_night(seed=3, fs=fs, stages=stages)
    pngs = []
    dur = len(stages) * 30.0
    for e in range(len(stages)):
        span = epoch_window_span(e, dur, PAD_S)
        a, b = int(span.start_s * fs), int(span.stop_s * fs)
        sig = {r: (x[a:b], fs) for r, x in night.signals.items()}
        pngs.append(render_png(EpochWindow(sig, PAD_S, span.pad_before_s, span.pad_after_s)))
    return [request_images(pngs[i - 1], pngs[i], pngs[i + 1]) for i in range(1, n + 1)]


class _Counted:
    """The runtime as a run sees it, every request asked the same way (``rationale``,
    ``max_tokens``), the generated tokens counted."""

    concurrent_requests = True

    def __init__(self, runtime, rationale: bool, max_tokens: int):
        self.runtime, self.rationale, self.max_tokens = runtime, rationale, max_tokens
        self.model_id = runtime.model_id
        self.tokens: list[int] = []
        self._lock = threading.Lock()

    def suggest(self, images, *, rationale: bool = False, max_tokens=None):
        answer = self.runtime.suggest(images, rationale=self.rationale, max_tokens=self.max_tokens)
        with self._lock:
            self.tokens.append(answer.completion_tokens or 0)
        return answer


def run_client(rt: _Counted, requests, parallel: int) -> float:
    rt.suggest(requests[0])  # warm-up
    rt.tokens.clear()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(rt.suggest, requests))
    return time.perf_counter() - t0


def run_scoring(rt: _Counted, n: int, parallel: int) -> float:
    from sleepvlm_ws.core.signals.recording import Recording
    from sleepvlm_ws.core.pipeline.scoring_run import ScoringRun, study_montage
    from sleepvlm_ws.core.synth import generate_night, write_night_edf

    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        folder = Path(tmp)
        edf = write_night_edf(generate_night(seed=3, fs=256.0, stages=bench_stages(n)),
                              folder / "night.edf")
        rt.suggest(epoch_images(1)[0])  # warm-up
        rt.tokens.clear()
        rec = Recording.open(edf)
        try:
            study = folder / "night.svlm-study"
            run = ScoringRun(rec, study_montage(rec, study, "bench"), study, rt,
                             parallel=parallel, actor="bench")
            t0 = time.perf_counter()
            summary = run.run()
            wall = time.perf_counter() - t0
        finally:
            rec.close()
    if summary.stored["fast"] + summary.skipped_no_signal != n:
        sys.exit(f"the scoring run stored {summary.stored['fast']} of {n} epochs")
    return wall


def server_log_summary(log: Path, parallel: int) -> str:
    """Time per generated token of one sequence (median over requests) from llama-server's log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    per_token = [float(ms) / int(n) for ms, n in _EVAL_LINE.findall(text) if int(n) > 1]
    if len(per_token) < 2:
        return ""
    med = statistics.median(per_token[1:])  # the first is the lone warm-up
    return (f"server log: {med:.1f} ms per generated token of one sequence (median of "
            f"{len(per_token) - 1} requests); with {parallel} slots decoding together that is "
            f"a decode step every {med:.1f} ms for {parallel} tokens")


def server_stats(url: str) -> dict | None:
    """``sleepvlm-ws serve``'s counters (GET /stats); None from another server."""
    import json

    try:
        with urllib.request.urlopen(url + "/stats", timeout=5) as r:
            return json.loads(r.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def engine_summary(st: dict) -> str:
    """Where ``sleepvlm-ws serve``'s time went (its counters since start, warm-up included)."""
    steps = max(1, st["steps"])
    return (f"engine: {st['requests']} requests, {st['steps']} decode steps "
            f"({st['step_tokens'] / steps:.1f} sequences each, {1000 * st['step_s'] / steps:.1f} ms "
            f"per step, {st['step_s']:.1f} s in all); prefill {st['prefill_s']:.1f} s in "
            f"{st['prefill_groups']} groups (vision encoder {st['encode_s']:.1f} s for "
            f"{st['images_encoded']} images, {st['images_reused']} reused; image-embedding "
            f"decodes {st['image_decode_s']:.1f} s; text decodes "
            f"{st['text_decode_s']:.1f} s); tokens read back (waiting for the GPU) and picked "
            f"{st['sample_s']:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--server-bin", help="llama-server to start")
    ap.add_argument("--own-server", action="store_true",
                    help="start `sleepvlm-ws serve` (the workstation's batched server) instead")
    ap.add_argument("--url")
    ap.add_argument("--server-args", default="", help="more llama-server flags, e.g. '-bs'")
    ap.add_argument("--parallel", type=int, default=8, help="requests in flight (all servers)")
    ap.add_argument("--instances", type=int, default=1,
                    help="llama-server processes on the GPU, parallel/instances slots each; "
                         "requests go to the least busy (core.model.remote.RemotePool)")
    ap.add_argument("--requests", type=int, default=0, help="default: 6 per slot")
    ap.add_argument("--rationale-tokens", type=int, default=300)
    ap.add_argument("--fast", action="store_true", help="fast answers instead of rationales")
    ap.add_argument("--path", choices=["client", "scoring-run"], default="client")
    ap.add_argument("--ctx-per-slot", type=int, default=4096)
    ap.add_argument("--log", type=Path, default=Path("llama-server.log"))
    ap.add_argument("--no-grammar", action="store_true",
                    help="send no answer grammar (random weights break it at nearly every token, "
                         "forcing a full 152k-vocabulary grammar pass a trained model rarely needs)")
    args = ap.parse_args()
    from sleepvlm_ws.core.model.remote import RemotePool, parse_server_urls

    # `timeout` (or a kill) must still stop the servers this script started (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench_server: terminated"))

    if args.instances < 1 or args.parallel < args.instances:
        sys.exit("--instances must be 1 or more, and at most --parallel")
    n = args.requests or 6 * args.parallel
    procs, urls = [], parse_server_urls(args.url or "")
    if not urls and not args.server_bin and not args.own_server:
        sys.exit("give --url, --server-bin or --own-server")
    slots = args.parallel // args.instances
    rationale = not args.fast
    max_tokens = args.rationale_tokens if rationale else 128
    try:
        if not urls:
            for i in range(args.instances):
                log = (args.log if i == 0
                       else args.log.with_name(f"{args.log.stem}-{i}{args.log.suffix}"))
                proc, url = start_server(None if args.own_server else args.server_bin, args.pack, slots, args.ctx_per_slot,
                                         log, shlex.split(args.server_args))
                procs.append(proc)
                urls.append(url)
        url = ",".join(urls)
        remote = RemotePool.from_pack(urls, args.pack, timeout=600, grammar=not args.no_grammar)
        rt = _Counted(remote, rationale, max_tokens)
        if args.path == "client":
            wall = run_client(rt, epoch_images(n), args.parallel)
        else:
            wall = run_scoring(rt, n, args.parallel)
        tokens = rt.tokens
        stats = [server_stats(u) for u in urls]
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    mean_tok = sum(tokens) / max(1, len(tokens))
    kind = f"rationale, ~{mean_tok:.0f} tokens" if rationale else f"fast answer, ~{mean_tok:.0f} tokens"
    print(f"server {url}{' ' + args.server_args if args.server_args else ''}, {args.parallel} "
          f"requests in flight ({args.instances} x {slots} slots), {n} requests ({kind}), path {args.path}, pack {args.pack.name}, "
          f"{'no grammar' if args.no_grammar else 'under the answer grammar'}")
    print(f"{'set-up':<58} {'epochs/s':>9} {'s/epoch':>8}")
    name = "sleepvlm-ws serve" if args.own_server else "llama-server"
    servers = f"{args.instances} x {name}" if args.instances > 1 else name
    label = (f"workstation client -> {servers}, {args.parallel} slots" if args.path == "client"
             else f"ScoringRun(parallel={args.parallel}) -> {servers}")
    print(f"{label:<58} {n / wall:9.2f} {wall / n:8.2f}")
    print(f"{'SleepVLM paper: W4A16, vLLM batched, RTX 4090-class':<58} "
          f"{PAPER_EPOCHS_PER_S:9.2f} {1 / PAPER_EPOCHS_PER_S:8.2f}")
    print(f"tokens/s generated: {sum(tokens) / wall:.0f}; machine: {os.cpu_count()} cores")
    for st in stats:
        if st:
            print(engine_summary(st))
    if procs and not args.own_server:
        summary = server_log_summary(args.log, slots)
        if summary:
            print(summary)


if __name__ == "__main__":
    main()
