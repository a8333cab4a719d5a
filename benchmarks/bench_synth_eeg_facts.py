"""Generated EEG per stage against published facts about real sleep EEG (issue 12, point 2).

For generated nights (central EEG C4-M1) it measures, per stage: relative band power (Welch,
4-s windows, 0.5-30 Hz total), the aperiodic exponent (slope of log power on log frequency,
30-45 Hz as Lendner et al. 2020 fitted it, and 2-30 Hz), RMS amplitude; in N2 the spindle and
K-complex densities (the events the generator planted); in N3 the slow-wave peak-to-peak
(0.5-2 Hz, per 1-s window, 90th percentile of the epoch) by age band. It prints each figure next
to the published fact it should meet and whether it does. Sources (docs/synth-realism.md):
AASM Manual v3 (definitions), Purcell et al. 2017 (spindle density), Colrain 2005 (K complexes),
Carrier et al. 2011 (slow waves and age), Lendner et al. 2020 (aperiodic exponent).

Run: .venv/bin/python benchmarks/bench_synth_eeg_facts.py [--seeds 0 1 2 3 4 5] [--hours 8] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np
from scipy import signal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

from provenance import git_commit  # noqa: E402
from sleepvlm_ws.core.base.stages import Stage  # noqa: E402
from sleepvlm_ws.core.synth import generate_night  # noqa: E402

STAGES = ("W", "N1", "N2", "N3", "R")
BANDS = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 12.0), "sigma": (12.0, 16.0),
         "beta": (16.0, 30.0)}




def _slope(f: np.ndarray, p: np.ndarray, lo: float, hi: float) -> float:
    band = (f >= lo) & (f <= hi)
    return float(-np.polyfit(np.log10(f[band]), np.log10(p[band] + 1e-20), 1)[0])


def measure(seeds: list[int], hours: float, fs: float) -> dict:
    """Per-stage figures pooled over the nights of ``seeds``."""
    rel = {s: {b: [] for b in BANDS} for s in STAGES}
    rms = {s: [] for s in STAGES}
    psd = {s: [] for s in STAGES}
    n2_minutes = 0.0
    spindles = kcs = 0
    sw_by_age: dict[str, list[float]] = {"<40": [], "40-59": [], ">=60": []}
    sw_sos = signal.butter(2, [0.5, 2.0], btype="bandpass", fs=fs, output="sos")
    f = None
    for seed in seeds:
        night = generate_night(seed=seed, hours=hours, fs=fs)
        x = night.signals["C4-M1"].astype(np.float64)
        spe = int(30 * fs)
        sw = signal.sosfiltfilt(sw_sos, x)
        age = night.subject.age
        band_age = "<40" if age < 40 else ("40-59" if age < 60 else ">=60")
        n2_epochs = {e for e, st in enumerate(night.stages) if st is Stage.N2}
        n2_minutes += len(n2_epochs) / 2
        for t, kind in night.events:
            if int(t // 30) in n2_epochs:
                spindles += kind == "spindle"
                kcs += kind == "k_complex"
        for e, st in enumerate(night.stages):
            if st.value not in STAGES:
                continue
            seg = x[e * spe:(e + 1) * spe]
            f, p = signal.welch(seg, fs=fs, nperseg=int(4 * fs))
            total = p[(f >= 0.5) & (f < 30)].sum()
            for b, (lo, hi) in BANDS.items():
                rel[st.value][b].append(p[(f >= lo) & (f < hi)].sum() / total)
            rms[st.value].append(float(np.std(seg)))
            psd[st.value].append(p)
            if st is Stage.N3:
                w = sw[e * spe:(e + 1) * spe].reshape(30, int(fs))
                sw_by_age[band_age].append(float(np.percentile(w.max(1) - w.min(1), 90)))
    out = {"rel": {s: {b: float(np.median(v)) for b, v in d.items()} for s, d in rel.items()},
           "rms": {s: float(np.median(v)) for s, v in rms.items()},
           "slope_30_45": {s: _slope(f, np.mean(psd[s], axis=0), 30, 45) for s in STAGES},
           "slope_2_30": {s: _slope(f, np.mean(psd[s], axis=0), 2, 30) for s in STAGES},
           "spindle_per_min": spindles / max(n2_minutes, 1e-9),
           "kc_per_min": kcs / max(n2_minutes, 1e-9),
           "sw_ptp_by_age": {k: (float(np.median(v)) if v else None, len(v)) for k, v in sw_by_age.items()},
           "epochs": {s: len(rms[s]) for s in STAGES}}
    return out


def _check(ok: bool) -> str:
    return "meets" if ok else "DIFFERS"


def table(m: dict) -> list[str]:
    r = m["rel"]
    lines = ["relative power (median over epochs; 0.5-30 Hz = 1), RMS amplitude, aperiodic exponent:",
             f"{'stage':6}{'epochs':>7}" + "".join(f"{b:>8}" for b in BANDS)
             + f"{'RMS uV':>8}{'exp 30-45':>10}{'exp 2-30':>9}"]
    for s in STAGES:
        lines.append(f"{s:6}{m['epochs'][s]:>7}" + "".join(f"{r[s][b]:8.3f}" for b in BANDS)
                     + f"{m['rms'][s]:8.1f}{m['slope_30_45'][s]:10.2f}{m['slope_2_30'][s]:9.2f}")
    ages = m["sw_ptp_by_age"]
    known = [ages[k][0] for k in ("<40", "40-59", ">=60") if ages[k][0] is not None]
    e30 = m["slope_30_45"]
    facts = [
        ("alpha highest in W (AASM: alpha rhythm of relaxed wake)",
         f"W {r['W']['alpha']:.3f} vs max other {max(r[s]['alpha'] for s in STAGES if s != 'W'):.3f}",
         r["W"]["alpha"] > max(r[s]["alpha"] for s in STAGES if s != "W")),
        ("delta rises N1 < N2 < N3 (AASM; slow-wave activity)",
         f"{r['N1']['delta']:.2f} < {r['N2']['delta']:.2f} < {r['N3']['delta']:.2f}",
         r["N1"]["delta"] < r["N2"]["delta"] < r["N3"]["delta"]),
        ("sigma highest in N2 (spindles, AASM N2.1)",
         f"N2 {r['N2']['sigma']:.3f} vs max other {max(r[s]['sigma'] for s in STAGES if s != 'N2'):.3f}",
         r["N2"]["sigma"] >= max(r[s]["sigma"] for s in STAGES if s != "N2")),
        ("theta above wake in N1 and R (AASM: LAMF 4-7 Hz)",
         f"W {r['W']['theta']:.3f}, N1 {r['N1']['theta']:.3f}, R {r['R']['theta']:.3f}",
         r["N1"]["theta"] > r["W"]["theta"] and r["R"]["theta"] > r["W"]["theta"]),
        ("spindle density in N2 about 2-7 per min (Purcell 2017; detector-dependent)",
         f"{m['spindle_per_min']:.2f} per min", 2.0 <= m["spindle_per_min"] <= 7.0),
        ("K-complex density in N2 about 0.5-3 per min (Colrain 2005)",
         f"{m['kc_per_min']:.2f} per min", 0.5 <= m["kc_per_min"] <= 3.0),
        ("N3 slow waves > 75 uV peak-to-peak (AASM N3.1; central lead here)",
         ", ".join(f"{k}: {v[0]:.0f} uV ({v[1]} epochs)" for k, v in ages.items() if v[0] is not None),
         all(v > 75 for v in known)),
        ("slow waves smaller with age (Carrier 2011)", " > ".join(f"{v:.0f}" for v in known),
         all(a > b for a, b in zip(known, known[1:]))),
        ("aperiodic exponent 30-45 Hz steepens W < N2 < N3 (Lendner 2020)",
         f"W {e30['W']:.2f}, N2 {e30['N2']:.2f}, N3 {e30['N3']:.2f}", e30["W"] < e30["N2"] < e30["N3"]),
        ("REM the steepest 30-45 Hz exponent (Lendner 2020)",
         f"R {e30['R']:.2f} vs max other {max(e30[s] for s in STAGES if s != 'R'):.2f}",
         e30["R"] > max(e30[s] for s in STAGES if s != "R")),
    ]
    lines += ["", f"{'published fact':74}{'generated':44} check"]
    for fact, value, ok in facts:
        lines.append(f"{fact:74}{value:44} {_check(ok)}")
    met = sum(ok for *_, ok in facts)
    lines.append(f"{met} of {len(facts)} facts met")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--fs", type=float, default=256.0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    head = [f"bench_synth_eeg_facts  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  "
            f"commit {git_commit()}",
            f"machine: {platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}",
            f"nights: seeds {' '.join(map(str, a.seeds))}, {a.hours:g} h at {a.fs:g} Hz; lead C4-M1", ""]
    text = "\n".join(head + table(measure(a.seeds, a.hours, a.fs)))
    print(text)
    if a.out:
        a.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
