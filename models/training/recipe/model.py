"""Build, save and load the default model (Hugging Face Qwen2.5-VL) and its phase-1 head."""

from __future__ import annotations

from pathlib import Path

from .layout import IMAGE_TOKENS
from .sizes import ModelSizes, qwen25vl_config
from .tokenizer import special_ids

N_ROLES = 6
N_SECONDS = 30
N_FEATURES = 5          # delta, theta, alpha, beta power (dB), mean absolute amplitude


def new_model(sizes: ModelSizes, tokenizer, seed: int):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    cfg = qwen25vl_config(sizes, special_ids(tokenizer))
    cfg._attn_implementation = "sdpa"
    return Qwen2_5_VLForConditionalGeneration(cfg)


def perception_head(sizes: ModelSizes):
    """Phase 1: the 128 merged visual tokens of one epoch image -> per-second features per role.

    Each token is squeezed to 32 numbers; the 128 x 32 flattened map is mapped linearly to
    6 roles x 30 s x 5 features. Only used in training; not part of the exported model."""
    import torch.nn as nn

    return nn.Sequential(nn.Linear(sizes.lm_hidden, 32), nn.GELU(), nn.Flatten(),
                         nn.Linear(IMAGE_TOKENS * 32, N_ROLES * N_SECONDS * N_FEATURES))


def save_checkpoint(model, tokenizer, out_dir: str | Path, max_shard: str = "15MB") -> Path:
    """save_pretrained (bf16 safetensors in shards under 16 MiB), tokenizer, image processor."""
    import torch
    from transformers import Qwen2VLImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = next(model.parameters()).dtype
    model.to(torch.bfloat16).save_pretrained(str(out), max_shard_size=max_shard)
    model.to(dtype)
    tokenizer.save_pretrained(str(out))
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 1280).save_pretrained(str(out))
    return out
