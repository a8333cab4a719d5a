"""Realism check: does a stager trained on thousands of real nights recognise our stages?

YASA's pretrained LightGBM stager (Vallat & Walker 2021, trained on NSRR nights) is run on a
generated night's C4-M1, LOC and CHIN; its epoch labels are compared with the generator's own
hypnogram. Cohen's kappa and per-stage recall/precision say how PSG-like the signals are.
``yasa`` and ``mne`` are imported lazily: they are only needed for this check.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace

import numpy as np

from ..base.stages import SLEEP_STAGES, Stage
from .acquisition import apply_acquisition, draw_acquisition
from .night import generate_night

STAGE_NAMES = [s.value for s in SLEEP_STAGES]       # W N1 N2 N3 R
_YASA = {"W": "W", "WAKE": "W", "N1": "N1", "N2": "N2", "N3": "N3", "R": "R", "REM": "R"}


def yasa_predict(night, eeg_only: bool = False, eeg: str = "C4-M1") -> list[str]:
    """YASA's stage for every 30-s epoch of ``night``.

    Parameters
    ----------
    night : SyntheticNight
        The generated night.
    eeg_only : bool
        Give YASA the one EEG channel alone (as a single-channel recording is staged), not
        C4-M1 + LOC + chin.
    eeg : str
        The EEG role to use.

    Returns
    -------
    list of str
        One of W, N1, N2, N3, R per epoch.
    """
    # late: mne and yasa (numba, LightGBM) take seconds to import and are needed only here
    import mne
    import yasa

    mne.set_log_level("ERROR")
    logging.getLogger("yasa").setLevel(logging.ERROR)
    roles = [eeg] if eeg_only else [eeg, "LOC", "CHIN"]
    data = np.vstack([night.signals[r].astype(np.float64) * 1e-6 for r in roles])  # uV -> V
    info = mne.create_info(roles, night.fs, ch_types=["eeg", "eog", "emg"][:len(roles)])
    raw = mne.io.RawArray(data, info, verbose=False)
    meta = {"age": int(night.subject.age), "male": True}
    sls = yasa.SleepStaging(raw, eeg_name=eeg, eog_name=None if eeg_only else "LOC",
                            emg_name=None if eeg_only else "CHIN", metadata=meta)
    pred = sls.predict()
    # yasa >= 0.7 returns a Hypnogram ("WAKE", "REM", ...); older versions an array of "W", "R".
    labels = pred.hypno.astype(str).tolist() if hasattr(pred, "hypno") else [str(p) for p in pred]
    return [_YASA.get(p, "?") for p in labels][: len(night.stages)]


def cohen_kappa(truth: list[str], pred: list[str]) -> float:
    """Cohen's kappa over the five sleep stages (epochs outside them are ignored)."""
    cm = confusion(truth, pred).astype(float)
    n = cm.sum()
    if n == 0:
        return float("nan")
    po = np.trace(cm) / n
    pe = float((cm.sum(1) * cm.sum(0)).sum()) / n ** 2
    return float((po - pe) / (1 - pe)) if pe < 1 else 1.0


def stage_kappa(cm: np.ndarray, i: int) -> float:
    """One-vs-rest Cohen's kappa for stage ``i`` of a confusion matrix (as the scoring-agreement
    literature reports per stage)."""
    n = cm.sum()
    tp = cm[i, i]
    fn = cm[i].sum() - tp
    fp = cm[:, i].sum() - tp
    tn = n - tp - fn - fp
    binary = np.array([[tp, fn], [fp, tn]], dtype=float)
    po = np.trace(binary) / n
    pe = float((binary.sum(1) * binary.sum(0)).sum()) / n ** 2
    return float((po - pe) / (1 - pe)) if pe < 1 else 1.0


def confusion(truth: list[str], pred: list[str]) -> np.ndarray:
    """Rows: generator's stage; columns: YASA's stage (order W N1 N2 N3 R)."""
    idx = {s: i for i, s in enumerate(STAGE_NAMES)}
    cm = np.zeros((5, 5), dtype=int)
    for t, p in zip(truth, pred):
        if t in idx and p in idx:
            cm[idx[t], idx[p]] += 1
    return cm


def yasa_agreement(night, eeg_only: bool = False) -> dict:
    """Agreement of YASA with the generator's hypnogram for one night (``eeg_only``: YASA sees
    the central EEG alone, see ``yasa_predict``).

    Returns kappa, accuracy, per-stage recall, precision, one-vs-rest kappa ("stage_kappa") and
    n (the generator's epoch counts), the confusion matrix (rows generator, columns YASA, order
    ``labels``) and YASA's predicted labels.
    """
    truth = [s.value for s in night.stages]
    pred = yasa_predict(night, eeg_only=eeg_only)
    keep = [i for i, t in enumerate(truth) if t in STAGE_NAMES]
    truth = [truth[i] for i in keep]
    pred = [pred[i] for i in keep]
    cm = confusion(truth, pred)
    recall = {s: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else float("nan"))
              for i, s in enumerate(STAGE_NAMES)}
    precision = {s: (float(cm[i, i] / cm[:, i].sum()) if cm[:, i].sum() else float("nan"))
                 for i, s in enumerate(STAGE_NAMES)}
    return {"kappa": cohen_kappa(truth, pred), "accuracy": float(np.trace(cm) / max(1, cm.sum())),
            "recall": recall, "precision": precision,
            "stage_kappa": {s: stage_kappa(cm, i) for i, s in enumerate(STAGE_NAMES)},
            "n": {s: int(cm[i].sum()) for i, s in enumerate(STAGE_NAMES)},
            "confusion": cm, "labels": list(STAGE_NAMES), "predicted": pred}


def format_table(rows: list[tuple[int, dict, float]]) -> str:
    """One line per seed (kappa, accuracy, recall per stage), then the pooled confusion matrix."""
    head = f"{'seed':>4} {'kappa':>6} {'acc':>6} " + " ".join(f"{'rec ' + s:>7}" for s in STAGE_NAMES) \
        + " " + " ".join(f"{'prec ' + s:>8}" for s in STAGE_NAMES) + f" {'gen s':>6}"
    lines = [head]
    for seed, r, gen_s in rows:
        lines.append(f"{seed:>4} {r['kappa']:6.3f} {r['accuracy']:6.3f} "
                     + " ".join(f"{r['recall'][s]:7.2f}" for s in STAGE_NAMES) + " "
                     + " ".join(f"{r['precision'][s]:8.2f}" for s in STAGE_NAMES) + f" {gen_s:6.1f}")
    cm = sum(r["confusion"] for _, r, _ in rows)
    lines.append("pooled confusion (rows generator, columns YASA):")
    lines.append("      " + " ".join(f"{s:>5}" for s in STAGE_NAMES))
    for i, s in enumerate(STAGE_NAMES):
        lines.append(f"{s:>5} " + " ".join(f"{v:5d}" for v in cm[i]))
    lines.append("pooled per-stage kappa (one vs rest): "
                 + "  ".join(f"{s} {stage_kappa(cm, i):.3f}" for i, s in enumerate(STAGE_NAMES)))
    kappas = [r["kappa"] for _, r, _ in rows]
    lines.append(f"mean kappa {np.mean(kappas):.3f}  min {np.min(kappas):.3f}")
    return "\n".join(lines)


def recorded(night, seed: int):
    """``night`` recorded through a random acquisition chain (core/synth/acquisition: central
    electrode site and reference, gains, hardware filters, mains, noise, artefacts) at a rate
    YASA is run at in the workstation (>= 100 Hz), as a new SyntheticNight; and the chain."""

    rng = np.random.default_rng([seed, 11])
    acq = draw_acquisition(rng)
    while acq.fs < 100 or acq.fs > night.fs:
        acq = draw_acquisition(rng)
    signals, fs = apply_acquisition(night.signals, night.fs, acq, rng)
    return replace(night, signals=signals, fs=fs), acq


def run(seeds: list[int], hours: float = 8.0, fs: float = 256.0, eeg_only: bool = False,
        acquisition: bool = False, log=None) -> list[tuple[int, dict, float]]:
    """Generate one night per seed and judge it with YASA; rows of (seed, agreement, seconds).

    ``acquisition``: record each night through a random hardware chain first (``recorded``);
    ``log(line)`` is told each chain.
    """
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        night = generate_night(seed=seed, hours=hours, fs=fs)
        if acquisition:
            night, acq = recorded(night, seed)
            if log:
                log(f"seed {seed}: {acq.describe()}")
        gen_s = time.perf_counter() - t0
        rows.append((seed, yasa_agreement(night, eeg_only=eeg_only), gen_s))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="YASA agreement with synthetic nights")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--fs", type=float, default=256.0)
    ap.add_argument("--eeg-only", action="store_true", help="YASA sees the central EEG alone")
    ap.add_argument("--acquisition", action="store_true",
                    help="record each night through a random hardware chain first (needs --fs >= 256)")
    a = ap.parse_args(argv)
    print(f"YASA input: {'central EEG only' if a.eeg_only else 'C4-M1 + LOC + chin'}; "
          f"{len(a.seeds)} nights of {a.hours:g} h generated at {a.fs:g} Hz"
          + ("; each recorded through a random acquisition chain" if a.acquisition else ""))
    print(format_table(run(a.seeds, a.hours, a.fs, eeg_only=a.eeg_only, acquisition=a.acquisition,
                           log=print)))


if __name__ == "__main__":
    main()
