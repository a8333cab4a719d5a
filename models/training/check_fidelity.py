"""Check that llama.cpp sees what training saw: pixels, tokens, positions, logits.

    python models/training/check_fidelity.py HF_DIR PACK_DIR [--json OUT]

1. recipe.layout.patchify == Qwen2-VL's image processor on rendered epoch images;
2. the request's text chunks as libmtmd tokenises them == recipe.layout.RequestLayout's ids;
3. the next-token logits where the answer names its first rule (after '{"applicable_rules": ["'),
   transformers (the checkpoint, float32) vs llama.cpp (the pack), on four requests (targets W,
   N1, N2, N3): cosine and top-1 agreement. (A first version compared the first answer token
   only; that cannot see the image and missed a 448-px attention-window mismatch.)
Exit 0 when all pass (cosine >= 0.9999 for an f16 pack, >= 0.999 for a 4-bit one; the default
model: 1.000000 f16, 0.999988 Q4_K_M; the superseded 448-px-window model: 0.9996 f16, which fails).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1] / "app"), str(HERE)]

from recipe.layout import RequestLayout, grid_thw, patchify  # noqa: E402

DECISION_PREFIX = '{"applicable_rules": ["'


def night_images(n: int = 6):
    from sleepvlm_ws.core.signals.render import (PAD_S, EpochWindow, epoch_window_span, render_epoch,
                                                 render_png)
    from sleepvlm_ws.core.base.stages import Stage
    from sleepvlm_ws.core.synth.night import generate_night

    stages = [Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R, Stage.N2][:n]
    night = generate_night(seed=3, stages=stages, fs=128.0)
    arrays, pngs = [], []
    for e in range(n):
        span = epoch_window_span(e, n * 30.0)
        a, b = int(round(span.start_s * 128)), int(round(span.stop_s * 128))
        win = EpochWindow({r: (x[a:b], 128.0) for r, x in night.signals.items()}, pad_s=PAD_S,
                          pad_before_s=span.pad_before_s, pad_after_s=span.pad_after_s)
        arrays.append(render_epoch(win))
        pngs.append(render_png(win))
    return np.stack(arrays), pngs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir", type=Path)
    ap.add_argument("pack_dir", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from sleepvlm_ws.core.model.request import EpochImages, build_messages
    from sleepvlm_ws.core.model.runtime import LocalRuntime

    report: dict = {}
    arrays, pngs = night_images()
    proc = Qwen2VLImageProcessorPil.from_pretrained(str(args.hf_dir))
    from PIL import Image
    ref = proc(images=[Image.fromarray(a) for a in arrays[:3]], return_tensors="np")
    mine = patchify(arrays[:3])
    report["pixels_max_abs_diff"] = float(np.abs(np.asarray(ref["pixel_values"]) - mine).max())
    report["grid_ok"] = np.asarray(ref["image_grid_thw"]).tolist() == grid_thw(3).tolist()

    rt = LocalRuntime(args.pack_dir, n_threads=2)
    tok = AutoTokenizer.from_pretrained(str(args.hf_dir))
    layout = RequestLayout(tok, rt.system_prompt)
    h, llama = rt._handler, rt._llama
    text, _ = h.render_prompt(llama, build_messages(rt.system_prompt, EpochImages(pngs[0], pngs[1], pngs[2])))
    mtmd = h._mtmd_cpp
    bitmaps = [h._create_bitmap_from_bytes(p) for p in pngs[:3]]
    enc = text.encode()
    it = mtmd.mtmd_input_text()
    it.text, it.text_len, it.add_special, it.parse_special = enc, len(enc), True, True
    chunks = mtmd.mtmd_input_chunks_init()
    mtmd.mtmd_tokenize(h.mtmd_ctx, chunks, ctypes.byref(it), (mtmd.mtmd_bitmap_p_ctypes * 3)(*bitmaps), 3)
    texts = []
    for i in range(mtmd.mtmd_input_chunks_size(chunks)):
        c = mtmd.mtmd_input_chunks_get(chunks, i)
        if mtmd.mtmd_input_chunk_get_type(c) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
            n = ctypes.c_size_t()
            p = mtmd.mtmd_input_chunk_get_tokens_text(c, ctypes.byref(n))
            texts.append([int(p[j]) for j in range(n.value)])
    mtmd.mtmd_input_chunks_free(chunks)
    report["text_chunks_equal"] = texts == layout.chunks
    if not report["text_chunks_equal"]:
        report["llama_chunks"] = [llama.detokenize(t, special=True).decode() for t in texts]
        report["hf_chunks"] = [tok.decode(t) for t in layout.chunks]

    import llama_cpp

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(args.hf_dir), dtype=torch.float32).eval()
    prefix = tok.encode(DECISION_PREFIX, add_special_tokens=False)
    cosines, same_top = [], []
    for target in range(1, len(pngs) - 1):          # requests for epochs 1..n-2 (W, N1, N2, N3)
        sent = pngs[target - 1: target + 2]
        text, _ = h.render_prompt(llama, build_messages(rt.system_prompt, EpochImages(*sent)))
        h.evaluate_prompt(llama, text, sent, max_new_tokens=len(prefix) + 1)
        llama.eval(prefix)                          # the answer's start: the next token is a rule ID
        ptr = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
        cpp = np.ctypeslib.as_array(ptr, shape=(llama.n_vocab(),)).astype(np.float64)
        ids = torch.tensor(np.concatenate([layout.prompt_ids, prefix]))[None]
        with torch.no_grad():
            out = model(input_ids=ids, pixel_values=torch.tensor(patchify(arrays[target - 1: target + 2])),
                        image_grid_thw=grid_thw(3), mm_token_type_ids=(ids == layout.image_id).long())
        hf = out.logits[0, -1].double().numpy()
        cosines.append(float(hf @ cpp / (np.linalg.norm(hf) * np.linalg.norm(cpp))))
        same_top.append(int(hf.argmax()) == int(cpp.argmax()))
    report["decision_logit_cosine"] = [round(c, 6) for c in cosines]
    report["decision_top1_equal"] = same_top
    report["logit_cosine"] = min(cosines)
    quant = rt.manifest.quantisation
    need = 0.9999 if quant.upper() in ("F16", "F32") else 0.999
    ok = (report["pixels_max_abs_diff"] < 1e-4 and report["grid_ok"] and report["text_chunks_equal"]
          and report["logit_cosine"] >= need and all(same_top))
    report["pass"] = bool(ok)
    print(json.dumps(report, indent=1, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    rt.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
