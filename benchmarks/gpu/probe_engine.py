"""Decode-step time of core.batch_engine in process (no HTTP): N requests at once, M tokens each.
Run: python benchmarks/gpu/probe_engine.py PACK SLOTS THREADS GPU_SAMPLING(0/1) [TOKENS]"""
import sys
import time
from pathlib import Path

import llama_cpp  # noqa: F401  (before scipy: see core/runtime.py)

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "app"), str(ROOT / "benchmarks")]
from bench_server import epoch_images  # noqa: E402
from sleepvlm_ws.core.batch_engine import BatchEngine  # noqa: E402
from sleepvlm_ws.core.model_pack import verify_pack  # noqa: E402
from sleepvlm_ws.core.request import build_messages  # noqa: E402

pack, slots, threads, gs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
tokens = int(sys.argv[5]) if len(sys.argv) > 5 else 100
sp = verify_pack(pack).system_prompt()
eng = BatchEngine(pack, slots=slots, n_gpu_layers=-1, n_threads=threads, gpu_sampling=gs,
                  ctx_per_slot=4096)
reqs = epoch_images(slots)
eng.submit(eng.prepare(build_messages(sp, reqs[0]), max_tokens=20, grammar=None)).wait()
s0 = dict(eng.stats())
t0 = time.time()
pend = [eng.submit(eng.prepare(build_messages(sp, r), max_tokens=tokens, grammar=None)) for r in reqs]
for p in pend:
    p.wait()
dt = time.time() - t0
s1 = eng.stats()
steps = s1["steps"] - s0["steps"]
print(f"slots {slots} threads {threads} gpu_sampling {gs}: {dt:.2f} s, {steps} steps, "
      f"{1000 * (s1['step_s'] - s0['step_s']) / max(1, steps):.1f} ms/step, prefill "
      f"{s1['prefill_s'] - s0['prefill_s']:.2f} s, picking {s1['sample_s'] - s0['sample_s']:.2f} s",
      flush=True)
eng.close()
