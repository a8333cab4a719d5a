"""Training data: epoch images, phase-1 perceptual targets and phase-2 answers, night by night.

Two sources, one output format (a ``.npz`` and a ``.json`` per night):
- synthetic nights from the workstation's own generator (core/synth), one subject per night,
  with a random sampling rate and a random reduced montage for some nights (channel drop);
- a directory of real scored studies (EDF + hypnogram, Sleep-EDF or MASS naming, see
  :func:`real_pairs`), read, mapped and rendered exactly as the workstation reads, maps and
  renders a recording.
The images come from core/signals/render.py (the function the workstation uses at run time); the rule
IDs and the rationale from core/trust/evidence (measured on the rendered roles only, never from the
generator's hidden state), the answer text from core/model/answer.format_answer.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .model import N_FEATURES, N_ROLES, N_SECONDS

ROLES = ("F4-M1", "C4-M1", "O2-M1", "LOC", "ROC", "CHIN")
STAGE_CODES = {"W": 0, "N1": 1, "N2": 2, "N3": 3, "R": 4}
FEATURE_BANDS = ((0.5, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 30.0))   # delta, theta, alpha, beta
SAMPLING_RATES = (50.0, 100.0, 128.0, 200.0, 256.0)
RATE_WEIGHTS = (0.08, 0.3, 0.2, 0.12, 0.3)


@dataclass(frozen=True)
class NightSpec:
    name: str
    seed: int
    hours: float = 0.0
    fs: float = 0.0               # the generator's rate (the recording's rate without acquisition)
    roles: tuple[str, ...] = ROLES
    recording: str = ""           # real data: EDF path
    hypnogram: str = ""           # real data: hypnogram path
    acquisition: bool = False     # record through a random hardware chain (core/synth/acquisition)


def synthetic_specs(n_nights: int, seed: int, first_subject: int = 1000,
                    hours: float | None = None) -> list[NightSpec]:
    """``n_nights`` subjects (generator seeds ``first_subject``..), each with its own night length
    (6.5-8.5 h, or ``hours``), sampling rate and montage: 70% full, 18% one to three roles
    dropped, 12% a single central EEG."""
    rng = np.random.default_rng(seed)
    specs = []
    for k in range(n_nights):
        fs = float(rng.choice(SAMPLING_RATES, p=RATE_WEIGHTS))
        u = rng.random()
        if u < 0.70:
            roles = ROLES
        elif u < 0.88:
            drop = set(rng.choice(["F4-M1", "O2-M1", "LOC", "ROC", "CHIN"], size=int(rng.integers(1, 4)),
                                  replace=False))
            roles = tuple(r for r in ROLES if r not in drop)
        else:
            roles = ("C4-M1",)
        specs.append(NightSpec(name=f"synth-{first_subject + k}", seed=first_subject + k,
                               hours=float(rng.uniform(6.5, 8.5)) if hours is None else float(hours),
                               fs=fs, roles=roles))
    return specs


# Montages of the domain-randomised recipe (v2): a large share of one-EEG nights, as single-
# channel studies and excerpts come (DREAMS, home devices), and Sleep-EDF's frontal + parietal
# bipolar pair (Fpz-Cz in the F4 role, Pz-Oz in the O2 role, one EOG, chin).
MONTAGES_V2 = (
    (0.35, ROLES),
    (0.35, ("C4-M1",)),
    (0.08, ("F4-M1", "O2-M1", "LOC", "CHIN")),
    (0.07, ("C4-M1", "LOC", "CHIN")),
    (0.15, None),                 # one to three of F4/O2/LOC/ROC/chin left out
)


def randomised_specs(n_nights: int, seed: int, first_subject: int = 2000,
                     hours: float | None = None) -> list[NightSpec]:
    """The v2 recipe's nights: each subject recorded through its own random hardware chain
    (``core.synth.acquisition``: electrode site and reference of the central EEG, gains, offsets,
    hardware filters, 50-512 Hz, mains, coloured noise, movement and sweat artefacts, lead-off
    stretches) with a montage from ``MONTAGES_V2``."""
    rng = np.random.default_rng(seed)
    weights = np.array([w for w, _ in MONTAGES_V2])
    specs = []
    for k in range(n_nights):
        roles = MONTAGES_V2[int(rng.choice(len(MONTAGES_V2), p=weights / weights.sum()))][1]
        if roles is None:
            drop = set(rng.choice(["F4-M1", "O2-M1", "LOC", "ROC", "CHIN"], size=int(rng.integers(1, 4)),
                                  replace=False))
            roles = tuple(r for r in ROLES if r not in drop)
        specs.append(NightSpec(name=f"synth-{first_subject + k}", seed=first_subject + k,
                               hours=float(rng.uniform(6.5, 8.5)) if hours is None else float(hours),
                               fs=512.0, roles=tuple(roles), acquisition=True))
    return specs


def real_pairs(directory: str | Path) -> list[NightSpec]:
    """Scored studies in ``directory`` (Sleep-EDF, MASS or the workstation's own naming), found
    exactly as `sleepvlm-ws evaluate FOLDER` finds them (core/pipeline/evaluate.find_scored_studies)."""
    from sleepvlm_ws.core.pipeline.evaluate import find_scored_studies

    return [NightSpec(name=edf.stem.replace(" ", "_"), seed=k, recording=str(edf), hypnogram=str(hyp))
            for k, (edf, hyp) in enumerate(find_scored_studies(directory))]


def epoch_features(traces: dict) -> tuple[np.ndarray, np.ndarray]:
    """Phase-1 targets of one epoch from its conditioned 100-Hz traces (core/signals/render.condition_epoch):
    [6 roles, 30 s, 5] = delta/theta/alpha/beta power in dB and mean absolute amplitude (uV, as
    log1p), per second; and a [6] mask of roles present."""
    out = np.zeros((N_ROLES, N_SECONDS, N_FEATURES), dtype=np.float32)
    mask = np.zeros(N_ROLES, dtype=bool)
    freqs = np.fft.rfftfreq(100, 1 / 100.0)
    window = np.hanning(100)
    for i, role in enumerate(ROLES):
        x = traces.get(role)
        if x is None or not np.isfinite(x).all():
            continue
        sec = x[: N_SECONDS * 100].reshape(N_SECONDS, 100)
        spec = np.abs(np.fft.rfft((sec - sec.mean(axis=1, keepdims=True)) * window, axis=1)) ** 2
        for b, (lo, hi) in enumerate(FEATURE_BANDS):
            band = (freqs >= lo) & (freqs < hi)
            out[i, :, b] = 10 * np.log10(spec[:, band].sum(axis=1) + 1e-3)
        out[i, :, 4] = np.log1p(np.abs(sec).mean(axis=1))
        mask[i] = True
    return out, mask


def _night_signals(spec: NightSpec):
    """(role -> (uV, fs) for the rendered roles, stages, n_epochs)."""
    from sleepvlm_ws.core.base.stages import Stage

    if spec.recording:
        from sleepvlm_ws.core.study.formats import import_hypnogram
        from sleepvlm_ws.core.signals.montage import auto_montage, read_role
        from sleepvlm_ws.core.signals.recording import Recording

        rec = Recording.open(spec.recording)
        montage = auto_montage([c.label for c in rec.channels])
        n = rec.n_epochs
        signals = {role: read_role(rec, d, 0.0, n * 30.0) for role, d in montage.roles.items() if d is not None}
        stages = list(import_hypnogram(spec.hypnogram, n_epochs=n).stages)
        return signals, stages, n
    from sleepvlm_ws.core.synth.night import generate_night

    if spec.acquisition:
        from sleepvlm_ws.core.synth.acquisition import apply_acquisition, draw_acquisition

        rng = np.random.default_rng([spec.seed, 7])
        acq = draw_acquisition(rng)
        night = generate_night(seed=spec.seed, hours=spec.hours, fs=512.0 if acq.fs > 256 else 256.0)
        recorded, fs = apply_acquisition(night.signals, night.fs, acq, rng)
        signals = {r: (recorded[r], fs) for r in spec.roles}
        return signals, [Stage(s) for s in night.stages], len(night.stages)
    night = generate_night(seed=spec.seed, hours=spec.hours, fs=spec.fs)
    signals = {r: (night.signals[r], night.fs) for r in spec.roles}
    return signals, [Stage(s) for s in night.stages], len(night.stages)


def build_night(spec: NightSpec, out_dir: str | Path) -> dict:
    """Render and label one night into ``out_dir/<name>.npz`` + ``.json``; returns its summary."""
    from sleepvlm_ws.core.model.answer import format_answer
    from sleepvlm_ws.core.trust.evidence.measures import measure_night
    from sleepvlm_ws.core.trust.evidence.rationale import write_rationale
    from sleepvlm_ws.core.trust.evidence.rules_check import derive_rules
    from sleepvlm_ws.core.signals.render import (PAD_S, EpochWindow, condition_epoch, draw_epoch,
                                                 epoch_window_span)

    out = Path(out_dir)
    signals, stages, n = _night_signals(spec)
    evidence = measure_night(signals, n)
    duration = n * 30.0
    recording_s = max(x.size / fs for x, fs in signals.values())   # the renderer's resampling grid
    images = np.zeros((n, 224, 448, 3), dtype=np.uint8)
    feats = np.zeros((n, N_ROLES, N_SECONDS, N_FEATURES), dtype=np.float16)
    fmask = np.zeros((n, N_ROLES), dtype=bool)
    for e in range(n):
        span = epoch_window_span(e, duration)
        window = {}
        for role, (x, fs) in signals.items():
            a, b = int(round(span.start_s * fs)), int(round(span.stop_s * fs))
            window[role] = (x[a:b], fs)
        placed = ({"epoch_start_s": e * 30.0, "recording_s": recording_s}   # svlm-render-2
                  if spec.acquisition else {})                            # v1: svlm-render-1
        traces = condition_epoch(EpochWindow(window, pad_s=PAD_S, pad_before_s=span.pad_before_s,
                                             pad_after_s=span.pad_after_s, **placed))
        images[e] = draw_epoch(traces)
        f, m = epoch_features(traces)
        feats[e], fmask[e] = f, m
    codes = np.full(n, -1, dtype=np.int8)
    answers = []
    for e in range(n):
        value = getattr(stages[e], "value", str(stages[e]))
        if value not in STAGE_CODES:
            answers.append(None)
            continue
        codes[e] = STAGE_CODES[value]
        rules = derive_rules(evidence, e, stages)
        rationale = write_rationale(stages[e], evidence, e, stages)
        answers.append({"rules": rules, "rationale": rationale,
                        "fine": format_answer(stages[e], rules, rationale),
                        "coarse": format_answer(stages[e], rules)})
    np.savez(out / f"{spec.name}.npz", images=images, feats=feats, fmask=fmask, stages=codes)
    meta = {"spec": asdict(spec), "n_epochs": n, "answers": answers}
    (out / f"{spec.name}.json").write_text(json.dumps(meta), encoding="utf-8")
    return {"name": spec.name, "n_epochs": n, "scored": int((codes >= 0).sum()),
            "no_rule": sum(1 for a in answers if a is not None and not a["rules"])}


def _build_one(args):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    spec, out_dir = args
    target = Path(out_dir) / f"{spec.name}.json"
    if target.is_file():                      # resumable: a night is written last by its .json
        meta = json.loads(target.read_text(encoding="utf-8"))
        return {"name": spec.name, "n_epochs": meta["n_epochs"], "scored": None, "no_rule": None}
    return build_night(spec, out_dir)


def build_all(specs: list[NightSpec], out_dir: str | Path, workers: int, log=print) -> list[dict]:
    """Build every night (in ``workers`` processes); nights already written are kept."""
    from multiprocessing import get_context

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, str(out)) for s in specs]
    if workers <= 1:
        results = [_build_one(j) for j in jobs]
    else:
        with get_context("spawn").Pool(workers) as pool:
            results = []
            for r in pool.imap_unordered(_build_one, jobs):
                results.append(r)
                log(f"  night {r['name']}: {r['n_epochs']} epochs")
    return results
