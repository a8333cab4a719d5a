"""Benchmark of the local model runtime: fast-pass epochs/s and seconds per rationale.

Runs consecutive epochs of a synthetic night through ``LocalRuntime`` as a scoring run does
(three images per request, fast pass with the coarse grammar; then a few rationales with the
full grammar), in these set-ups:

- ``stock``: llama-cpp-python's own ``MTMDChatHandler`` and sampler chain (the reference);
- ``no reuse``: ``LocalRuntime(keep_prompt_cache=False)``: everything evaluated per request;
- ``prompt KV``: the system prompt's KV cells kept between requests;
- ``prompt KV + images``: also the vision encoder's output kept (each image serves 3 requests);
  this is the workstation's set-up, stage probabilities included (``core.model.stage_confidence``);
- ``prompt KV + images, no confidence``: the same without the stage probabilities, so the two
  rows give their cost per epoch (the answers are the same).

The first request of each set-up (model warm-up, first prompt evaluation) is timed apart.
Random test weights are right for speed only: their answers are longer or shorter than a
trained model's (the fast answer is whitespace-heavy; a rationale runs to --rationale-tokens),
and they rarely pick a grammar-valid token, so the runtime's best-token-first grammar check
(which spares a trained model most full grammar passes) cannot show its gain here.

Run:  .venv/bin/python benchmarks/bench_inference.py                 (tiny pack, built if needed)
      .venv/bin/python benchmarks/bench_inference.py --pack DIR --n-gpu-layers -1
Needs numpy, scipy, pillow, llama-cpp-python and the sleepvlm_ws package (plus torch and
transformers only to build the default tiny pack).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

try:  # llama_cpp before scipy: the CUDA build on the GPU image segfaults at load otherwise
    import llama_cpp  # noqa: F401
except ImportError:
    pass

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "app") not in sys.path:
    sys.path.insert(0, str(ROOT / "app"))

SLEEPVLM_PUBLISHED = ("SleepVLM paper: W4A16 AutoRound, vLLM (batched), RTX 4090-class GPU",
                      4.15, None)


def machine_notes(n_threads: int, n_gpu_layers: int) -> list[str]:
    import llama_cpp

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    notes = [f"CPU: {cpu}, {os.cpu_count()} logical cores; n_threads={n_threads}",
             f"llama-cpp-python {llama_cpp.__version__}; GPU offload "
             f"{'available' if llama_cpp.llama_supports_gpu_offload() else 'not built'}; "
             f"n_gpu_layers={n_gpu_layers}",
             f"Python {platform.python_version()} on {platform.system()} {platform.release()}"]
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if gpu.returncode == 0 and gpu.stdout.strip():
            notes.append("GPU: " + "; ".join(gpu.stdout.strip().splitlines()))
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        notes.append(f"load average at start: {os.getloadavg()[0]:.1f}")
    except OSError:
        pass
    return notes


def epoch_images(n_epochs: int):
    """EpochImages for epochs 0..n-1 of a synthetic night (edges included)."""
    from sleepvlm_ws.core.signals.render import PAD_S, EpochWindow, epoch_window_span, render_png
    from sleepvlm_ws.core.model.request import request_images
    from sleepvlm_ws.core.base.stages import Stage
    from sleepvlm_ws.core.synth import generate_night

    cycle = [Stage.W, Stage.N1, Stage.N2, Stage.N2, Stage.N3, Stage.N3, Stage.N2, Stage.R]
    stages = [cycle[i % len(cycle)] for i in range(n_epochs)]
    fs = 128.0
    night = generate_night(seed=7, stages=stages, fs=fs)
    duration = n_epochs * 30.0
    pngs = []
    for epoch in range(n_epochs):
        span = epoch_window_span(epoch, duration)
        a, b = int(round(span.start_s * fs)), int(round(span.stop_s * fs))
        signals = {role: (x[a:b], fs) for role, x in night.signals.items()}
        pngs.append(render_png(EpochWindow(signals, pad_s=PAD_S, pad_before_s=span.pad_before_s,
                                           pad_after_s=span.pad_after_s)))
    return [request_images(pngs[e - 1] if e else None, pngs[e], pngs[e + 1] if e + 1 < n_epochs else None)
            for e in range(n_epochs)]


def default_tiny_pack() -> Path:
    """The test suite's tiny random-weight pack, built once into the user's cache (about 20 s)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from packs import build_tiny_pack

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    out = cache / "sleepvlm-ws" / "bench-tiny-pack"
    if not (out / "manifest.json").is_file():
        print(f"building the tiny pack into {out} ...", file=sys.stderr)
        out.parent.mkdir(parents=True, exist_ok=True)
        build_tiny_pack(out, progress=lambda *a: print("  ", *a, file=sys.stderr))
    return out


class StockRunner:
    """llama-cpp-python's stock handler and sampler chain, with the runtime's request and grammar."""

    def __init__(self, pack: Path, n_threads: int, n_gpu_layers: int, grammars: dict):
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import MTMDChatHandler
        from llama_cpp.llama_grammar import LlamaGrammar

        from sleepvlm_ws.core.model.model_pack import verify_pack

        m = verify_pack(pack)
        self.prompt = m.system_prompt()
        self.grammar = {k: (LlamaGrammar.from_string(v, verbose=False) if grammars else None)
                        for k, v in (grammars or {False: None, True: None}).items()}
        self.llama = Llama(model_path=str(m.lm_path),
                           chat_handler=MTMDChatHandler(clip_model_path=str(m.mmproj_path), verbose=False,
                                                        use_gpu=n_gpu_layers != 0),
                           n_ctx=m.context_size, n_threads=n_threads, n_threads_batch=n_threads,
                           n_gpu_layers=n_gpu_layers, flash_attn=True, verbose=False, seed=1)

    def suggest(self, images, *, rationale: bool, max_tokens: int):
        from llama_cpp._utils import suppress_stdout_stderr

        from sleepvlm_ws.core.model.request import build_messages

        with suppress_stdout_stderr(disable=False):   # the stock handler lets libmtmd log
            out = self.llama.create_chat_completion(
                messages=build_messages(self.prompt, images), temperature=0.0, top_p=0.8,
                repeat_penalty=1.0, seed=1, max_tokens=max_tokens, grammar=self.grammar[rationale])
        return out["usage"]["completion_tokens"]

    def close(self):
        self.llama.close()


def run_setup(name: str, make, images, rationale_epochs, fast_tokens: int, rationale_tokens: int):
    """Time the fast pass over ``images`` and rationales for ``rationale_epochs``."""
    t0 = time.perf_counter()
    runner = make()
    load_s = time.perf_counter() - t0

    probe = []      # (seconds, extra decodes) of the stage probabilities, per fast answer

    def call(img, rationale, n):
        t = time.perf_counter()
        out = runner.suggest(img, rationale=rationale, max_tokens=n)
        tokens = out if isinstance(out, int) else out.completion_tokens
        return time.perf_counter() - t, tokens

    def fast_call(img):
        result = call(img, False, fast_tokens)
        stats = getattr(runner, "last_stats", None)
        if getattr(runner, "confidence", False) and stats is not None:
            probe.append((stats.stage_seconds, stats.stage_extra_decodes))
        return result

    first_s, _ = call(images[0], False, fast_tokens)
    fast = [fast_call(img) for img in images[1:]]
    rationales = [call(images[e], True, rationale_tokens) for e in rationale_epochs]
    runner.close()
    fast_s = [s for s, _ in fast]
    return {
        "name": name, "load_s": load_s, "first_s": first_s,
        "fast_eps": len(fast_s) / sum(fast_s), "fast_s": statistics.median(fast_s),
        "fast_tokens": statistics.mean(t for _, t in fast),
        "rationale_s": statistics.median(s for s, _ in rationales) if rationales else None,
        "rationale_tokens": statistics.mean(t for _, t in rationales) if rationales else None,
        "probe_s": statistics.median(s for s, _ in probe) if probe else None,
        "probe_mean_s": statistics.mean(s for s, _ in probe) if probe else None,
        "probe_decodes": statistics.mean(d for _, d in probe) if probe else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", type=Path, help="model pack folder (default: the tiny test pack)")
    parser.add_argument("--n-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="-1: all layers on the GPU")
    parser.add_argument("--epochs", type=int, default=10, help="fast-pass requests per set-up (+1 warm-up)")
    parser.add_argument("--rationales", type=int, default=2, help="rationale requests per set-up")
    parser.add_argument("--rationale-tokens", type=int, default=300)
    parser.add_argument("--fast-tokens", type=int, default=128)
    parser.add_argument("--setups", default="stock,no-reuse,prompt-kv,prompt-kv+images")
    parser.add_argument("--no-grammar", action="store_true",
                        help="free decoding of exactly the token budgets (random weights rarely stop): "
                             "the cost of a trained model, whose tokens pass the grammar check at once")
    args = parser.parse_args(argv)

    from sleepvlm_ws.core.model.model_pack import verify_pack
    from sleepvlm_ws.core.model.runtime import LocalRuntime

    pack = args.pack or default_tiny_pack()
    manifest = verify_pack(pack)
    images = epoch_images(args.epochs + 1)
    rationale_epochs = [1 + (i * 3) % max(1, args.epochs - 1) for i in range(args.rationales)]
    common = dict(n_threads=args.n_threads, n_gpu_layers=args.n_gpu_layers)

    def local(keep: bool, images_cached: bool, confidence: bool = True):
        return lambda: LocalRuntime(pack, keep_prompt_cache=keep, cache_image_embeddings=images_cached,
                                    use_grammar=not args.no_grammar, confidence=confidence, **common)

    probe = LocalRuntime(pack, **common)
    grammars = {False: probe.grammar_text(rationale=False), True: probe.grammar_text(rationale=True)}
    for img in images[1:3]:     # the second request shows how much of the prompt is shared
        probe.suggest(img, rationale=False, max_tokens=args.fast_tokens)
    prompt_cells, prefix = probe.last_stats.prompt_cells, probe.last_stats.prefix_reused
    probe.close()

    makers = {
        "stock": ("llama-cpp-python stock handler + sampler", lambda: StockRunner(
            pack, args.n_threads, args.n_gpu_layers, None if args.no_grammar else grammars)),
        "no-reuse": ("LocalRuntime, nothing kept", local(False, False)),
        "prompt-kv": ("LocalRuntime, system-prompt KV kept", local(True, False)),
        "prompt-kv+images": ("LocalRuntime, prompt KV + image embeddings", local(True, True)),
        "no-confidence": ("LocalRuntime, KV + images, no confidence",
                          local(True, True, confidence=False)),
    }
    rows = []
    for key in [s.strip() for s in args.setups.split(",") if s.strip()]:
        label, make = makers[key]
        print(f"running: {label} ...", file=sys.stderr, flush=True)
        rows.append(run_setup(label, make, images, rationale_epochs, args.fast_tokens,
                              args.rationale_tokens))

    print(f"\nPack: {manifest.label} at {pack}; answers "
          + ("NOT grammar-constrained (--no-grammar)" if args.no_grammar else "under the answer grammar"))
    print(f"Request: {prompt_cells} prompt tokens ({prefix} in the shared prefix, 3 x 128 image "
          f"tokens); {args.epochs} fast requests after 1 warm-up; {len(rationale_epochs)} rationales "
          f"of up to {args.rationale_tokens} tokens")
    for note in machine_notes(args.n_threads, args.n_gpu_layers):
        print("  " + note)
    head = (f"| {'set-up':<44} | load s | first s | fast epochs/s | fast s/epoch | fast tokens "
            f"| s/rationale | rationale tokens |")
    print()
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        rs = "-" if r["rationale_s"] is None else f"{r['rationale_s']:.2f}"
        rt = "-" if r["rationale_tokens"] is None else f"{r['rationale_tokens']:.0f}"
        print(f"| {r['name']:<44} | {r['load_s']:6.2f} | {r['first_s']:7.2f} | {r['fast_eps']:13.2f} "
              f"| {r['fast_s']:12.3f} | {r['fast_tokens']:11.1f} | {rs:>11} | {rt:>16} |")
    name, eps, _ = SLEEPVLM_PUBLISHED
    print(f"| {name[:44]:<44} | {'-':>6} | {'-':>7} | {eps:13.2f} | {1 / eps:12.3f} | {'-':>11} "
          f"| {'-':>11} | {'-':>16} |")
    print(f"\n(published row: {name}; full rationales, many requests batched at once)")
    for r in rows:
        if r["probe_s"] is not None:
            print(f"stage probabilities in '{r['name']}': median {1000 * r['probe_s']:.1f} ms, "
                  f"mean {1000 * r['probe_mean_s']:.1f} ms per fast answer (inside its s/epoch), "
                  f"{r['probe_decodes']:.1f} extra decode calls on average")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
