"""Eight epochs of quiet background with waveforms planted at known places: the signal the
evidence-claim tests (trust) and the evidence overlays' tests (ui) check against."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from edf_factory import write_psg_edf

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.synth import waveforms as wf
from sleepvlm_ws.core.synth.night import EDF_LABELS

FS = 256.0
SPE = int(30 * FS)
S = Stage
STAGES = [S.W, S.W, S.N1, S.N2, S.N2, S.N3, S.R, S.N2]
SPINDLE = (3, 5.0)          # epoch, second: C4-maximal spindle
SLOW_WAVES = (5, 10.0, 12.0)  # epoch, from, seconds of 1-Hz 160-uV waves on F4
REMS = (6, (4.0, 11.0, 19.0))
K_COMPLEX = (7, 12.0)


def _at(epoch: int, sec: float) -> int:
    return epoch * SPE + int(sec * FS)


def planted_signals() -> dict[str, np.ndarray]:
    """Eight epochs of quiet background with waveforms planted at known places (role -> uV)."""
    rng = np.random.default_rng(7)
    n = len(STAGES) * SPE
    sig = {r: 4.0 * wf.band_noise(n, FS, 0.5, 30.0, rng) + 3.0 * wf.band_noise(n, FS, 4.0, 7.0, rng)
           for r in ("F4-M1", "C4-M1", "O2-M1")}
    sig["LOC"] = 2.0 * wf.band_noise(n, FS, 0.5, 30.0, rng)
    sig["ROC"] = 2.0 * wf.band_noise(n, FS, 0.5, 30.0, rng)
    level = {S.W: 12.0, S.N1: 7.0, S.N2: 6.0, S.N3: 6.0, S.R: 1.5}
    sig["CHIN"] = np.repeat([level[s] for s in STAGES], SPE) * wf.band_noise(n, FS, 12.0, 110.0, rng)
    t = np.arange(2 * SPE) / FS
    sig["O2-M1"][: 2 * SPE] += 30.0 * np.sin(2 * np.pi * 10.0 * t)      # eyes-closed wake
    sp = wf.spindle(FS, 13.0, 1.2, 30.0)
    wf.add_at(sig["C4-M1"], _at(*SPINDLE), sp)
    wf.add_at(sig["F4-M1"], _at(*SPINDLE), 0.5 * sp)
    epoch, start, secs = SLOW_WAVES
    tw = np.arange(int(secs * FS)) / FS
    wf.add_at(sig["F4-M1"], _at(epoch, start), 80.0 * np.sin(2 * np.pi * 1.0 * tw))
    for sec in REMS[1]:
        rem = wf.eye_movement(FS, 90.0, 0.12, 0.4)
        wf.add_at(sig["LOC"], _at(REMS[0], sec), rem)
        wf.add_at(sig["ROC"], _at(REMS[0], sec), -rem)
    wf.add_at(sig["F4-M1"], _at(*K_COMPLEX), wf.k_complex(FS, 150.0))
    return {r: x.astype(np.float64) for r, x in sig.items()}


def write_planted_edf(path: Path, roles=None) -> Path:
    sig = planted_signals()
    roles = roles or list(sig)
    return write_psg_edf(path, {EDF_LABELS[r]: sig[r] for r in roles}, FS)
