"""Build a random-weight Qwen2.5-VL pack of real SleepVLM-3B shapes (speed measurements only).

The published SleepVLM weights are not available on the project's machines, and speed does not
depend on the weights' values, so the GPU benchmark measures a pack with the exact shapes of
Qwen2.5-VL-3B (LM 2048 x 36, ViT 1280 x 32) and random weights, converted and quantised through
the workstation's own converter (LM Q4_K_M, mmproj f16). Answers from it are meaningless.

Run (on the lent GPU; see benchmarks/gpu/run_gpu_bench.sh):
    PYTHONPATH=app:tests python3 benchmarks/gpu/make_shaped_pack.py OUT_DIR [--shape 3b|tiny]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {
    # Qwen2.5-VL-3B-Instruct's configuration (the base SleepVLM was fine-tuned from).
    "3b": dict(text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                         num_attention_heads=16, num_key_value_heads=2, mrope=[16, 24, 24]),
               vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                           fullatt_block_indexes=[7, 15, 23, 31])),
}


def shaped_config(shape: str):
    from transformers import Qwen2_5_VLConfig

    from packs import VOCAB_ROWS

    s = SHAPES[shape]
    t = s["text"]
    text = dict(vocab_size=VOCAB_ROWS, hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
                num_hidden_layers=t["num_hidden_layers"], num_attention_heads=t["num_attention_heads"],
                num_key_value_heads=t["num_key_value_heads"], max_position_embeddings=128000,
                rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=True,
                bos_token_id=151643, eos_token_id=151645,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": t["mrope"]})
    v = s["vision"]
    vision = dict(depth=v["depth"], hidden_size=v["hidden_size"], intermediate_size=v["intermediate_size"],
                  num_heads=v["num_heads"], in_channels=3, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, window_size=112, out_hidden_size=t["hidden_size"],
                  fullatt_block_indexes=v["fullatt_block_indexes"], tokens_per_second=2)
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=151655,
                           video_token_id=151656, vision_start_token_id=151652,
                           vision_end_token_id=151653, tie_word_embeddings=True)
    cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    return cfg


def build_checkpoint(out: Path, shape: str) -> Path:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from packs import _qwen2_tokenizer

    try:
        from transformers import Qwen2VLImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import Qwen2VLImageProcessor as ImageProcessor
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(shaped_config(shape)).to(torch.bfloat16).eval()
    model.save_pretrained(str(out))
    with tempfile.TemporaryDirectory() as tmp:
        _qwen2_tokenizer(Path(tmp)).save_pretrained(str(out))
    ImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 1280).save_pretrained(str(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", help="pack folder (with --checkpoint-only: the checkpoint folder)")
    ap.add_argument("--shape", default="3b", choices=sorted(SHAPES))
    ap.add_argument("--checkpoint-only", action="store_true", help="only build the HF checkpoint")
    ap.add_argument("--from-checkpoint", help="convert this already built HF checkpoint")
    args = ap.parse_args()
    t0 = time.time()
    if args.checkpoint_only:
        build_checkpoint(Path(args.out), args.shape)
        print(f"checkpoint built in {time.time() - t0:.0f} s", file=sys.stderr)
        return
    from sleepvlm_ws.core.model.convert import convert_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        hf = Path(args.from_checkpoint) if args.from_checkpoint else build_checkpoint(Path(tmp) / "hf", args.shape)
        pack = convert_checkpoint(hf, Path(args.out), name=f"random-{args.shape}-shaped", version="0",
                                  licence="random weights, speed measurements only", context_size=8192,
                                  progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"pack {pack} in {time.time() - t0:.0f} s", file=sys.stderr)
    for f in sorted(Path(pack).iterdir()):
        print(f"  {f.name:<32} {f.stat().st_size / 2**20:9.1f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
