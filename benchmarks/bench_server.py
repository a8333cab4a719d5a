"""Throughput through an OpenAI-compatible server with parallel sequences (the lab-server path).

Starts llama.cpp's own server (``llama-server``, continuous batching, ``-np`` parallel slots) on
127.0.0.1 with a model pack, or uses a server already running (``--url``), and drives it with
the workstation's own client (``core.remote.RemoteRuntime``) from N threads: consecutive epochs
of a synthetic night, full rationales (``--rationale-tokens`` each) or fast answers. Prints
epochs/s beside SleepVLM's published 4.15 epochs/s (W4A16, vLLM batching, RTX 4090-class GPU).

Run:  python benchmarks/bench_server.py --server-bin PATH/llama-server --pack DIR --parallel 8
      python benchmarks/bench_server.py --url http://127.0.0.1:8080 --pack DIR --parallel 8
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary: str, pack_dir: Path, parallel: int, ctx_per_slot: int, log: Path) -> tuple:
    from sleepvlm_ws.core.model_pack import verify_pack

    m = verify_pack(pack_dir, cache=False)
    port = free_port()
    cmd = [binary, "-m", str(m.lm_path), "--mmproj", str(m.mmproj_path),
           "--host", "127.0.0.1", "--port", str(port), "-np", str(parallel),
           "-c", str(ctx_per_slot * parallel), "-ngl", "999", "-fa", "on"]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"llama-server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(1)
    proc.kill()
    sys.exit("llama-server did not become ready in 300 s")


def epoch_images(n: int, fs: float = 256.0):
    from sleepvlm_ws.core.render import PAD_S, EpochWindow, epoch_window_span, render_png
    from sleepvlm_ws.core.request import request_images
    from sleepvlm_ws.core.stages import Stage
    from sleepvlm_ws.core.synth import generate_night

    stages = ([Stage.W] * 4 + [Stage.N1] * 3 + [Stage.N2] * 8 + [Stage.N3] * 6 + [Stage.R] * 6) * (n // 27 + 1)
    stages = stages[: n + 2]
    night = generate_night(seed=3, fs=fs, stages=stages)
    pngs = []
    dur = len(stages) * 30.0
    for e in range(len(stages)):
        span = epoch_window_span(e, dur, PAD_S)
        a, b = int(span.start_s * fs), int(span.stop_s * fs)
        sig = {r: (x[a:b], fs) for r, x in night.signals.items()}
        pngs.append(render_png(EpochWindow(sig, PAD_S, span.pad_before_s, span.pad_after_s)))
    return [request_images(pngs[i - 1], pngs[i], pngs[i + 1]) for i in range(1, n + 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--server-bin")
    ap.add_argument("--url")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--rationale-tokens", type=int, default=300)
    ap.add_argument("--fast", action="store_true", help="fast answers instead of rationales")
    ap.add_argument("--ctx-per-slot", type=int, default=8192)
    ap.add_argument("--log", type=Path, default=Path("llama-server.log"))
    ap.add_argument("--no-grammar", action="store_true",
                    help="send no answer grammar (random weights break it at nearly every token, "
                         "forcing a full 152k-vocabulary grammar pass a trained model rarely needs)")
    args = ap.parse_args()
    from sleepvlm_ws.core.remote import RemoteRuntime

    proc = None
    url = args.url
    if url is None:
        if not args.server_bin:
            sys.exit("give --url or --server-bin")
        proc, url = start_server(args.server_bin, args.pack, args.parallel, args.ctx_per_slot, args.log)
    try:
        requests = epoch_images(args.requests)
        rt = RemoteRuntime.from_pack(url, args.pack, timeout=600, grammar=not args.no_grammar)
        rationale = not args.fast
        max_tokens = args.rationale_tokens if rationale else 128
        rt.suggest(requests[0], rationale=rationale, max_tokens=max_tokens)  # warm-up
        lock = threading.Lock()
        tokens = []

        def one(img):
            a = rt.suggest(img, rationale=rationale, max_tokens=max_tokens)
            with lock:
                tokens.append(a.completion_tokens or 0)
            return a

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            list(pool.map(one, requests))
        wall = time.perf_counter() - t0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    n = len(requests)
    mean_tok = sum(tokens) / max(1, len(tokens))
    kind = f"rationale, ~{mean_tok:.0f} tokens" if rationale else f"fast answer, ~{mean_tok:.0f} tokens"
    print(f"server {url}, {args.parallel} parallel slots, {n} requests ({kind}), pack {args.pack.name}, "
          f"{'no grammar' if args.no_grammar else 'under the answer grammar'}")
    print(f"{'set-up':<58} {'epochs/s':>9} {'s/epoch':>8}")
    print(f"{'workstation client -> llama-server, ' + str(args.parallel) + ' slots':<58} {n / wall:9.2f} {wall / n:8.2f}")
    print(f"{'SleepVLM paper: W4A16, vLLM batched, RTX 4090-class':<58} {4.15:9.2f} {1 / 4.15:8.2f}")
    print(f"tokens/s generated: {sum(tokens) / wall:.0f}; machine: {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
