"""The two training phases, resumable, with a time budget per invocation.

Phase 1 (waveform-perceptual pre-training): the vision encoder + projector and a small head
predict, from one epoch image, per-second delta/theta/alpha/beta power (dB) and mean absolute
amplitude for each of the six roles (standardised; missing roles masked out). The language
model is not used.
Phase 2 (rule-grounded fine-tuning): the three-image request -> the JSON answer, half of the
examples with the rationale ("fine"), half stage + rules only ("coarse"); loss on the answer
tokens only. Unlike SleepVLM (LoRA on a pre-trained LM, vision frozen) our LM starts from
random weights, so every LM weight is trained, and the vision encoder is fine-tuned at a tenth
of the learning rate.

A phase's total steps are fixed at its first invocation from the measured speed and the time
budget (``--phase1-seconds`` / ``--phase2-seconds``), so the cosine schedule is known; every
invocation may stop early (``--stop-after``), saving its state, and the next resumes it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from .model import perception_head


class Log:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self, **row):
        row["time"] = round(time.time(), 1)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def _lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


class _Clock:
    """Fixes a phase's total steps from the speed of steps 10-30 (after the first steps' warm-up)
    and the phase's time budget, and logs the loss every 50 steps."""

    def __init__(self, phase: int, seconds: float, batch: int, log: Log):
        self.phase, self.seconds, self.batch, self.log = phase, seconds, batch, log
        self._t10, self._s10 = None, 0

    def tick(self, step: int, total: int | None, loss, lr: float) -> int | None:
        if total is None and self._t10 is None and step >= 10:      # also after a resume
            self._t10, self._s10 = time.time(), step
        elif total is None and self._t10 is not None and step >= self._s10 + 20:
            rate = (step - self._s10) / (time.time() - self._t10)
            total = max(40, int(self.seconds * rate))
            self.log(phase=self.phase, event="schedule", steps_per_s=round(rate, 2), total_steps=total,
                     batch=self.batch)
        if step % 50 == 0:
            self.log(phase=self.phase, step=step, loss=round(float(loss.detach()), 4), lr=lr)
        return total


def _visual_tokens(model, pixel_values, grid):
    out = model.model.visual(pixel_values, grid_thw=grid)
    return out if hasattr(out, "shape") else out.pooler_output


def _save(path: Path, **state) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def run_phase1(model, sizes, data, work: Path, *, seconds: float, stop_after: float, seed: int,
               batch: int = 96, lr: float = 1e-3, log: Log) -> bool:
    """Returns True when the phase is complete."""
    import torch

    state_path = work / "phase1.pt"
    head = perception_head(sizes).to(data.device)
    params = list(model.model.visual.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    step, total = 0, None
    feats = data.feats[data.fmask]
    mean, std = feats.mean(dim=0), feats.std(dim=0).clamp_min(1e-3)     # per feature [30, 5]
    if state_path.is_file():
        st = torch.load(state_path, map_location=data.device, weights_only=False)
        if st.get("done"):
            return True
        model.model.visual.load_state_dict(st["visual"])
        head.load_state_dict(st["head"])
        opt.load_state_dict(st["opt"])
        step, total = st["step"], st["total"]
    rng = np.random.default_rng(seed + 1 + step)
    model.train()
    t0 = time.time()
    clock = _Clock(1, seconds, batch, log)
    pool = np.arange(data.n)
    while True:
        if total is not None and step >= total:
            break
        idx = rng.choice(pool, size=batch)
        pixels, grid, target, mask = data.perception_batch(idx)
        for g in opt.param_groups:
            g["lr"] = _lr(step, total or 10**9, lr, 100)
        with torch.autocast(device_type=data.device.split(":")[0], dtype=torch.bfloat16,
                            enabled=data.device.startswith("cuda")):
            tokens = _visual_tokens(model, pixels, grid).reshape(len(idx), -1, sizes.lm_hidden)
            pred = head(tokens.float()).reshape(target.shape)
        err = ((pred.float() - (target - mean) / std) ** 2).mean(dim=(2, 3))
        loss = (err * mask).sum() / mask.sum().clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        total = clock.tick(step, total, loss, opt.param_groups[0]["lr"])
        if time.time() - t0 > stop_after:
            _save(state_path, visual=model.model.visual.state_dict(), head=head.state_dict(),
                  opt=opt.state_dict(), step=step, total=total)
            log(phase=1, event="paused", step=step)
            return False
    _save(state_path, visual=model.model.visual.state_dict(), done=True, step=step, total=total)
    log(phase=1, event="done", step=step, loss=round(float(loss.detach()), 4))
    return True


def run_phase2(model, data, work: Path, *, seconds: float, stop_after: float, seed: int,
               batch: int = 32, lr: float = 1e-3, fine_fraction: float = 0.5, log: Log) -> bool:
    import torch

    state_path = work / "phase2.pt"
    visual = list(model.model.visual.parameters())
    visual_ids = {id(p) for p in visual}
    rest = [p for p in model.parameters() if id(p) not in visual_ids]
    opt = torch.optim.AdamW([{"params": rest, "scale": 1.0}, {"params": visual, "scale": 0.1}],
                            lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    step, total = 0, None
    if state_path.is_file():
        st = torch.load(state_path, map_location=data.device, weights_only=False)
        model.load_state_dict(st["model"])
        if st.get("done"):
            return True
        opt.load_state_dict(st["opt"])
        step, total = st["step"], st["total"]
    elif (work / "phase1.pt").is_file():
        st = torch.load(work / "phase1.pt", map_location=data.device, weights_only=False)
        model.model.visual.load_state_dict(st["visual"])
    rng = np.random.default_rng(seed + 2 + step)
    weights = data.stage_weights()
    model.train()
    t0 = time.time()
    clock = _Clock(2, seconds, batch, log)
    while True:
        if total is not None and step >= total:
            break
        idx = rng.choice(data.scored, size=batch, p=weights)
        fine = rng.random(batch) < fine_fraction
        inputs = data.request_batch(idx, fine)
        for g in opt.param_groups:
            g["lr"] = _lr(step, total or 10**9, lr, 200) * g["scale"]
        with torch.autocast(device_type=data.device.split(":")[0], dtype=torch.bfloat16,
                            enabled=data.device.startswith("cuda")):
            loss = model(**inputs).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        total = clock.tick(step, total, loss, opt.param_groups[0]["lr"])
        if time.time() - t0 > stop_after:
            _save(state_path, model=model.state_dict(), opt=opt.state_dict(), step=step, total=total)
            log(phase=2, event="paused", step=step)
            return False
    _save(state_path, model=model.state_dict(), done=True, step=step, total=total)
    log(phase=2, event="done", step=step, loss=round(float(loss.detach()), 4))
    return True


STAGES = ("W", "N1", "N2", "N3", "R")


def quick_validation(model, data, n: int, seed: int, log: Log, batch: int = 64) -> dict:
    """Greedy coarse answers (transformers, no grammar; the answer is started with its coarse
    first key, as the runtime's fast-pass grammar forces) for ``n`` epochs of the validation nights:
    parse rate, accuracy, Cohen's kappa. A training-time sanity figure; the model card's numbers
    come from `sleepvlm-ws evaluate` on the converted pack."""
    import torch

    from sleepvlm_ws.core.model.answer import parse_answer

    rng = np.random.default_rng(seed)
    idx = rng.choice(data.scored, size=min(n, len(data.scored)), replace=False)
    model.eval()
    ref, hyp, parsed = [], [], 0
    tok = data.layout.tokenizer
    with torch.no_grad():
        for a in range(0, len(idx), batch):
            part = idx[a: a + batch]
            inputs = data.prompt_batch(part, answer_prefix='{"applicable_rules":')
            with torch.autocast(device_type=data.device.split(":")[0], dtype=torch.bfloat16,
                                enabled=data.device.startswith("cuda")):
                out = model.generate(**inputs, max_new_tokens=48, do_sample=False,
                                     eos_token_id=data.layout.end_id, pad_token_id=data.layout.pad_id)
            for row, i in zip(out[:, inputs["input_ids"].shape[1]:], part):
                answer = parse_answer('{"applicable_rules":' + tok.decode(row, skip_special_tokens=True))
                stage = getattr(answer.stage, "value", None) if answer else None
                parsed += stage in STAGES
                ref.append(int(data.stages[i]))
                hyp.append(STAGES.index(stage) if stage in STAGES else -1)
    model.train()
    ref_a, hyp_a = np.array(ref), np.array(hyp)
    acc = float((ref_a == hyp_a).mean())
    cm = np.zeros((5, 5))
    for r, h in zip(ref_a, hyp_a):
        if h >= 0:
            cm[r, h] += 1
    po = np.trace(cm) / max(1, cm.sum())
    pe = (cm.sum(0) * cm.sum(1)).sum() / max(1, cm.sum()) ** 2
    result = {"n": len(idx), "parsed": parsed / len(idx), "accuracy": round(acc, 4),
              "kappa": round(float((po - pe) / (1 - pe)) if pe < 1 else 0.0, 4),
              "recall": {s: round(float(cm[k, k] / max(1, (ref_a == k).sum())), 3) for k, s in enumerate(STAGES)}}
    log(phase="validation", **result)
    return result
