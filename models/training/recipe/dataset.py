"""The built nights, loaded once into (GPU) memory, and the batches both phases draw from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .layout import RequestLayout, grid_thw, patchify_torch

IGNORE = -100


class NightSet:
    """All epochs of the given nights: images, phase-1 targets, answers, neighbours."""

    def __init__(self, data_dir: str | Path, names: list[str], layout: RequestLayout, device: str):
        import torch

        from sleepvlm_ws.core.model.request import blank_epoch_png

        images, feats, fmask, stages, prev, nxt = [], [], [], [], [], []
        self.fine: list[list[int] | None] = []
        self.coarse: list[list[int] | None] = []
        self.rules: list[list[str] | None] = []
        offset = 0
        for name in names:
            arrays = np.load(Path(data_dir) / f"{name}.npz")
            meta = json.loads((Path(data_dir) / f"{name}.json").read_text(encoding="utf-8"))
            n = int(meta["n_epochs"])
            images.append(arrays["images"])
            feats.append(arrays["feats"])
            fmask.append(arrays["fmask"])
            stages.append(arrays["stages"])
            idx = np.arange(offset, offset + n)
            p, q = idx - 1, idx + 1
            p[0] = -1
            q[-1] = -1
            prev.append(p)
            nxt.append(q)
            for a in meta["answers"]:
                self.fine.append(layout.answer_ids(a["fine"]) if a else None)
                self.coarse.append(layout.answer_ids(a["coarse"]) if a else None)
                self.rules.append(a["rules"] if a else None)
            offset += n
        from io import BytesIO

        from PIL import Image

        blank = np.asarray(Image.open(BytesIO(blank_epoch_png())).convert("RGB"))[None]
        self.n = offset
        self.blank = offset                      # index of the blank image (missing neighbour)
        self.images = torch.from_numpy(np.concatenate(images + [blank])).to(device)
        self.feats = torch.from_numpy(np.concatenate(feats).astype(np.float32)).to(device)
        self.fmask = torch.from_numpy(np.concatenate(fmask)).to(device)
        self.stages = np.concatenate(stages).astype(np.int64)
        self.prev = np.where(np.concatenate(prev) < 0, self.blank, np.concatenate(prev))
        self.next = np.where(np.concatenate(nxt) < 0, self.blank, np.concatenate(nxt))
        self.scored = np.flatnonzero(self.stages >= 0)
        self.layout = layout
        self.device = device

    # ------------------------------------------------------------------ sampling

    def stage_weights(self, power: float = 0.5) -> np.ndarray:
        """Per scored epoch, a sampling weight proportional to count(stage)^-power (N1 is rare)."""
        counts = np.bincount(self.stages[self.scored], minlength=5).astype(np.float64)
        w = (np.maximum(counts, 1) ** -power)[self.stages[self.scored]]
        return w / w.sum()

    # ------------------------------------------------------------------ phase 1

    def perception_batch(self, idx: np.ndarray):
        """(pixel_values, grid_thw, targets [B,6,30,5], mask [B,6]) for single-epoch images."""
        import torch

        t = torch.as_tensor(idx, device=self.device)
        return (patchify_torch(self.images[t]), grid_thw(len(idx)).to(self.device),
                self.feats[t], self.fmask[t])

    # ------------------------------------------------------------------ phase 2

    def request_batch(self, idx: np.ndarray, fine: np.ndarray):
        """Model inputs for the three-image requests of epochs ``idx`` (answers fine or coarse)."""
        import torch

        answers = [self.fine[i] if f else self.coarse[i] for i, f in zip(idx, fine)]
        prompt = self.layout.prompt_ids
        length = len(prompt) + max(len(a) for a in answers)
        ids = np.full((len(idx), length), self.layout.pad_id, dtype=np.int64)
        labels = np.full((len(idx), length), IGNORE, dtype=np.int64)
        mask = np.zeros((len(idx), length), dtype=np.int64)
        for row, ans in enumerate(answers):
            ids[row, : len(prompt)] = prompt
            ids[row, len(prompt): len(prompt) + len(ans)] = ans
            labels[row, len(prompt): len(prompt) + len(ans)] = ans
            mask[row, : len(prompt) + len(ans)] = 1
        order = np.stack([self.prev[idx], idx, self.next[idx]], axis=1).reshape(-1)
        t = torch.as_tensor(order, device=self.device)
        ids_t = torch.as_tensor(ids, device=self.device)
        return dict(input_ids=ids_t, labels=torch.as_tensor(labels, device=self.device),
                    attention_mask=torch.as_tensor(mask, device=self.device),
                    pixel_values=patchify_torch(self.images[t]),
                    image_grid_thw=grid_thw(len(order)).to(self.device),
                    mm_token_type_ids=(ids_t == self.layout.image_id).long())

    def prompt_batch(self, idx: np.ndarray, answer_prefix: str = ""):
        """Inputs for generation (the prompt, then ``answer_prefix``; all the same length)."""
        import torch

        ids = self.layout.prompt_ids
        if answer_prefix:
            ids = np.concatenate([ids, self.layout.tokenizer.encode(answer_prefix, add_special_tokens=False)])
        prompt = torch.as_tensor(np.tile(ids, (len(idx), 1)), device=self.device)
        order = np.stack([self.prev[idx], idx, self.next[idx]], axis=1).reshape(-1)
        t = torch.as_tensor(order, device=self.device)
        return dict(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                    pixel_values=patchify_torch(self.images[t]),
                    image_grid_thw=grid_thw(len(order)).to(self.device),
                    mm_token_type_ids=(prompt == self.layout.image_id).long())
