"""Build a random-weight pack of a candidate size and print its CPU fast-pass speed.

    python models/training/probe_speed.py --sizes default --out /tmp/probe [--lm-layers 6 ...]

Speed only (weights are noise): the sizes in recipe/sizes.py were picked with it (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT / "app"), str(HERE)]

from recipe.sizes import SIZES, qwen25vl_config  # noqa: E402
from recipe.tokenizer import load_tokenizer, special_ids, train_tokenizer  # noqa: E402


def sample_corpus() -> list[str]:
    from sleepvlm_ws.core.model.answer import format_answer
    from sleepvlm_ws.core.trust.evidence.measures import measure_night
    from sleepvlm_ws.core.trust.evidence.rationale import write_rationale
    from sleepvlm_ws.core.trust.evidence.rules_check import derive_rules
    from sleepvlm_ws.core.synth.night import generate_night

    night = generate_night(seed=1, hours=1.0, fs=100.0)
    ev = measure_night({r: (x, night.fs) for r, x in night.signals.items()}, len(night.stages))
    out = [(HERE / "default-system-prompt.txt").read_text(encoding="utf-8")]
    for i in range(1, len(night.stages) - 1):
        rules = derive_rules(ev, i, night.stages)
        out.append(format_answer(night.stages[i], rules, write_rationale(night.stages[i], ev, i, night.stages)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="default", choices=sorted(SIZES))
    ap.add_argument("--out", type=Path, required=True)
    for f in dataclasses.fields(SIZES["default"]):
        if f.type in ("int", int):
            ap.add_argument("--" + f.name.replace("_", "-"), type=int)
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args()
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from sleepvlm_ws.core.model.convert import convert_checkpoint

    sizes = SIZES[args.sizes]
    over = {f.name: getattr(args, f.name) for f in dataclasses.fields(sizes)
            if getattr(args, f.name, None) is not None}
    sizes = dataclasses.replace(sizes, **over)
    print(sizes)
    with tempfile.TemporaryDirectory() as tmp:
        hf = Path(tmp) / "hf"
        train_tokenizer(sample_corpus(), hf, vocab_size=sizes.vocab_size)
        tok = load_tokenizer(hf)
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration(qwen25vl_config(sizes, special_ids(tok)))
        print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M")
        model.to(torch.bfloat16).save_pretrained(str(hf))
        tok.save_pretrained(str(hf))
        Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 1280).save_pretrained(str(hf))
        convert_checkpoint(hf, args.out, name="probe", prompt_file=HERE / "default-system-prompt.txt",
                           licence="probe", context_size=2048, progress=print)
    for p in sorted(args.out.iterdir()):
        print(f"{p.name}: {p.stat().st_size / 2**20:.1f} MiB")
    return subprocess.call([sys.executable, str(ROOT / "benchmarks" / "bench_inference.py"), "--pack",
                            str(args.out), "--n-threads", "2", "--epochs", str(args.epochs),
                            "--rationales", "0", "--fast-tokens", "16", "--setups", "prompt-kv+images"])


if __name__ == "__main__":
    raise SystemExit(main())
