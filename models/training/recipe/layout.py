"""Training inputs laid out exactly as llama.cpp's libmtmd lays out a workstation request.

A request (core/model/request.py, rendered through the pack's chat template and tokenised by libmtmd)
is, chunk by chunk (checked against libmtmd by check_fidelity.py)::

    text   <|im_start|>system\\n{prompt}<|im_end|>\\n<|im_start|>user\\nPreceding epoch N‑1: <|vision_start|>
    image  128 tokens (16 x 8 merged patches; M-RoPE advances the position by max(16, 8) = 16)
    text   <|vision_end|>**Target epoch N**: <|vision_start|>
    image  128 tokens
    text   <|vision_end|>Subsequent epoch N+1: <|vision_start|>
    image  128 tokens
    text   <|vision_end|><|im_end|>\\n<|im_start|>assistant\\n
    answer {json}<|im_end|>

Each text chunk is tokenised on its own (libmtmd does the same). Image pixels are patchified as
Qwen2-VL's image processor does (CLIP mean/std, temporal patch 2 by repetition, 2x2 merge order),
which is what llama.cpp's clip code reproduces from the mmproj GGUF.
"""

from __future__ import annotations

import numpy as np

from sleepvlm_ws.core.model.request import PRECEDING_LABEL, SUBSEQUENT_LABEL, TARGET_LABEL

PATCH = 14
MERGE = 2
TEMPORAL = 2
IMAGE_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
IMAGE_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
GRID_T, GRID_H, GRID_W = 1, 224 // PATCH, 448 // PATCH           # 1 x 16 x 32 patches
IMAGE_TOKENS = GRID_H * GRID_W // (MERGE * MERGE)                # 128


def text_chunks(system_prompt: str) -> list[str]:
    """The four text chunks around the three images."""
    return [
        f"<|im_start|>system\n{system_prompt}<|im_end|>\n<|im_start|>user\n{PRECEDING_LABEL}<|vision_start|>",
        f"<|vision_end|>{TARGET_LABEL}<|vision_start|>",
        f"<|vision_end|>{SUBSEQUENT_LABEL}<|vision_start|>",
        "<|vision_end|><|im_end|>\n<|im_start|>assistant\n",
    ]


class RequestLayout:
    """Token ids of the fixed part of every request, and of answers."""

    def __init__(self, tokenizer, system_prompt: str):
        self.tokenizer = tokenizer
        self.image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.chunks = [tokenizer.encode(t, add_special_tokens=False) for t in text_chunks(system_prompt)]
        ids: list[int] = []
        for i, chunk in enumerate(self.chunks):
            ids += chunk
            if i < 3:
                ids += [self.image_id] * IMAGE_TOKENS
        self.prompt_ids = np.array(ids, dtype=np.int64)

    def answer_ids(self, answer_text: str) -> list[int]:
        return self.tokenizer.encode(answer_text, add_special_tokens=False) + [self.end_id]


def patchify(images: np.ndarray) -> np.ndarray:
    """uint8 RGB images [N, 224, 448, 3] -> pixel_values [N * 512, 3 * 2 * 14 * 14] float32,
    in Qwen2-VL's patch order (rows of 2x2 merge groups)."""
    x = images.astype(np.float32) / 255.0
    x = (x - IMAGE_MEAN) / IMAGE_STD                                  # N, H, W, C
    x = np.transpose(x, (0, 3, 1, 2))                                  # N, C, H, W
    n = x.shape[0]
    x = np.repeat(x[:, None], TEMPORAL, axis=1)                       # N, T, C, H, W
    x = x.reshape(n, GRID_T, TEMPORAL, 3, GRID_H // MERGE, MERGE, PATCH, GRID_W // MERGE, MERGE, PATCH)
    x = x.transpose(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)                      # N,t,h,w,mh,mw,C,T,P,P
    return np.ascontiguousarray(x.reshape(n * GRID_T * GRID_H * GRID_W, 3 * TEMPORAL * PATCH * PATCH))


def patchify_torch(images):
    """The same as :func:`patchify` on a torch uint8 tensor [N, 224, 448, 3] (on any device)."""
    import torch

    mean = torch.tensor(IMAGE_MEAN, device=images.device)
    std = torch.tensor(IMAGE_STD, device=images.device)
    x = (images.float() / 255.0 - mean) / std
    x = x.permute(0, 3, 1, 2)
    n = x.shape[0]
    x = x[:, None].expand(n, TEMPORAL, *x.shape[1:])
    x = x.reshape(n, GRID_T, TEMPORAL, 3, GRID_H // MERGE, MERGE, PATCH, GRID_W // MERGE, MERGE, PATCH)
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
    return x.reshape(n * GRID_T * GRID_H * GRID_W, 3 * TEMPORAL * PATCH * PATCH).contiguous()


def grid_thw(n_images: int):
    import torch

    return torch.tensor([[GRID_T, GRID_H, GRID_W]] * n_images, dtype=torch.long)
