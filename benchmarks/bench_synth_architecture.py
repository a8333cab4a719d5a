"""Night architecture of generated hypnograms vs real scored nights (issue 12, point 2).

Compares :func:`sleepvlm_ws.core.synth.draw_hypnogram` (8-h nights, several seeds) with
- Sleep-EDF Expanded sleep-cassette, 20 nights (Kemp et al. 2000; PhysioNet, Goldberger et al.
  2000), R&K mapped to AASM by the project's importer (S3 + S4 -> N3, movement -> artefact),
  each cut by :func:`~sleepvlm_ws.core.synth.architecture.trim_wake` to the sleep period plus
  30 min of wake on either side (the recordings run for hours before lights off and after lights on);
- Dreem Open Datasets (Guillot et al. 2020) DOD-H (25 healthy adults) and DOD-O (55 patients with
  obstructive sleep apnea), one consensus per night: the per-epoch majority of the 5 scorers,
  ties broken by the most reliable scorer (:func:`~sleepvlm_ws.core.synth.architecture.consensus`).

Prints mean +- sd across nights of every statistic, then the pooled epoch-to-epoch and
bout-to-bout transition matrices (row-normalised). Reads ../shared/data; skips when absent.

Run: .venv/bin/python benchmarks/bench_synth_architecture.py [--seeds 20] [--hours 8]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

from provenance import git_commit  # noqa: E402
from sleepvlm_ws.core.study.formats import import_hypnogram  # noqa: E402
from sleepvlm_ws.core.synth.architecture import (  # noqa: E402
    ORDER, architecture, consensus, read_dreem_scoring, row_normalised, summarise, trim_wake)
from sleepvlm_ws.core.synth.cycles import draw_hypnogram  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hypnograms"


def sleep_edf_nights(data: Path = DATA) -> list[list]:
    files = sorted((data / "sleep-edf").glob("*-Hypnogram.edf"))
    return [trim_wake(import_hypnogram(f).stages) for f in files]


def dreem_nights(subset: str, data: Path = DATA) -> list[list]:
    base = data / "dreem-dod" / "scorers" / subset
    records = sorted(p.name for p in (base / "scorer_1").glob("*.json"))
    nights = []
    for rec in records:
        scorings = [read_dreem_scoring(base / f"scorer_{k}" / rec) for k in range(1, 6)]
        n = min(len(s) for s in scorings)
        nights.append(consensus([s[:n] for s in scorings]))
    return nights


def generated_nights(seeds: int, hours: float) -> list[list]:
    return [draw_hypnogram(np.random.default_rng(seed), hours) for seed in range(seeds)]




def _cell(s) -> str:
    return "—" if s is None else f"{s[0]:.1f} ± {s[1]:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--hours", type=float, default=8.0)
    args = ap.parse_args(argv)
    print(f"# bench_synth_architecture — machine: {platform.node()} ({platform.machine()}, "
          f"{platform.processor() or platform.system()}), Python {platform.python_version()}; "
          f"git {git_commit()}; {dt.datetime.now().isoformat(timespec='seconds')}")
    if not DATA.is_dir():
        print(f"SKIP: real hypnograms not found at {DATA} (../shared/data is absent)")
        return 0
    t0 = time.perf_counter()
    gen = generated_nights(args.seeds, args.hours)
    t_gen = time.perf_counter() - t0
    sets = {
        f"generated ({args.seeds} seeds, {args.hours:g} h)": gen,
        "Sleep-EDF SC (20, ±30 min W)": sleep_edf_nights(),
        "DOD-H (healthy)": dreem_nights("dodh"),
        "DOD-O (apnea)": dreem_nights("dodo"),
    }
    print(f"draw_hypnogram: {1000 * t_gen / args.seeds:.2f} ms per night")
    print("nights: " + ", ".join(f"{k}: {len(v)}" for k, v in sets.items()))
    archs = {k: [architecture(n) for n in v] for k, v in sets.items()}
    names = list(next(iter(archs.values()))[0].scalars())
    w0 = max(len(n) for n in names) + 2
    cols = list(archs)
    widths = [max(len(c), 16) + 2 for c in cols]
    print()
    print("Statistics per night, mean ± sd across nights (bouts within the sleep period; "
          "— = none)")
    print("statistic".ljust(w0) + "".join(c.ljust(w) for c, w in zip(cols, widths)))
    for name in names:
        row = name.ljust(w0)
        for c, w in zip(cols, widths):
            row += _cell(summarise(a.scalars()[name] for a in archs[c])).ljust(w)
        print(row)
    # Share of nights containing every stage (the generator's requirement).
    print("nights with all 5 stages".ljust(w0) + "".join(
        f"{sum(all(s in set(n) for s in ORDER) for n in sets[c]) / len(sets[c]):.2f}".ljust(w)
        for c, w in zip(cols, widths)))
    for title, attr in (("Epoch-to-epoch transition probabilities within the sleep period "
                         "(rows: from, pooled over nights)", "transitions"),
                        ("Bout-to-bout change probabilities (rows: from; pooled)",
                         "bout_transitions")):
        print()
        print(title)
        for c in cols:
            m = row_normalised(sum(getattr(a, attr) for a in archs[c]))
            print(f"  {c}")
            print("        " + "".join(f"{s.value:>7}" for s in ORDER))
            for i, s in enumerate(ORDER):
                print(f"    {s.value:<4}" + "".join(f"{x:7.3f}" for x in m[i]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
