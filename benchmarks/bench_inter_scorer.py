"""Inter-scorer agreement of five real technologists on the Dreem Open Datasets (issue 15, point 6).

DOD-H (25 healthy adults) and DOD-O (55 patients with obstructive sleep apnea), each night scored
independently by five sleep technologists (Guillot et al., IEEE TNSRE 2020; MIT licence). For each
set, with the nights' epochs pooled (each night cut to its shortest scoring):
- Fleiss' kappa of the five, overall and per stage (over the epochs all five scored);
- Cohen's kappa of every pair (and its spread over the nights);
- each scorer against the consensus of the other four (majority; the others' ties left out and
  counted) and against the consensus of all five (which includes the scorer: an upper bound);
- how many epochs the five do not all agree on, and how many the five-way majority leaves tied.
Computed by ``sleepvlm_ws.core.trust.inter_scorer`` and ``.consensus``, the code the workstation
uses. Reads ../shared/data (never copied); prints SKIP when it is absent.

Run: .venv/bin/python benchmarks/bench_inter_scorer.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

from provenance import git_commit  # noqa: E402
from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage  # noqa: E402
from sleepvlm_ws.core.trust.agreement import agreement  # noqa: E402
from sleepvlm_ws.core.trust.consensus import consensus  # noqa: E402
from sleepvlm_ws.core.trust.inter_scorer import compare_scorers, differing_epochs  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hypnograms" / "dreem-dod" / "scorers"
CODES = {-1: Stage.UNSCORED, 0: Stage.W, 1: Stage.N1, 2: Stage.N2, 3: Stage.N3, 4: Stage.R}
SCORERS = [f"scorer {k}" for k in range(1, 6)]


def nights(subset: str) -> list[dict[str, list[Stage]]]:
    base = DATA / subset
    out = []
    for record in sorted(p.name for p in (base / "scorer_1").glob("*.json")):
        rows = {f"scorer {k}": [CODES[int(c)] for c in json.loads(
            (base / f"scorer_{k}" / record).read_text())] for k in range(1, 6)}
        n = min(len(r) for r in rows.values())
        out.append({k: v[:n] for k, v in rows.items()})
    return out


def _f(x, digits=3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def report(subset: str, title: str) -> None:
    t0 = time.perf_counter()
    data = nights(subset)
    pooled = {s: [st for night in data for st in night[s]] for s in SCORERS}
    r = compare_scorers(pooled)
    five = consensus(pooled)
    per_night_pairs = {pair: [] for pair in r.pairwise}
    differing = ties = 0
    for night in data:
        for (a, b) in per_night_pairs:
            k = agreement(night[a], night[b]).kappa
            if k is not None:
                per_night_pairs[(a, b)].append(k)
        differing += len(differing_epochs(night))
        ties += len(consensus(night).ties)
    seconds = time.perf_counter() - t0
    f = r.fleiss
    print(f"\n## {title}: {len(data)} nights, {r.n_epochs} epochs ({seconds:.1f} s to compute)")
    print(f"Fleiss' kappa (5 scorers): {_f(f.kappa)} over {f.n_epochs} epochs all five scored "
          f"({f.n_excluded} left out: some scorer gave no stage); observed {_f(f.observed)}, "
          f"chance {_f(f.chance)}")
    print("  per stage: " + "  ".join(f"{s.value} {_f(f.per_stage[s])}" for s in SLEEP_STAGES))
    print(f"epochs the five do not all agree on: {differing} ({100 * differing / r.n_epochs:.1f} %); "
          f"five-way majority tied: {ties} ({100 * ties / r.n_epochs:.2f} %)")
    print("\nCohen's kappa, pairs (pooled; per night mean ± sd, min)")
    print(f"  {'pair':<22}{'kappa':>7}{'acc':>7}   {'per night':<22}")
    for (a, b), ag in r.pairwise.items():
        ks = np.array(per_night_pairs[(a, b)])
        print(f"  {a + ' / ' + b:<22}{_f(ag.kappa):>7}{_f(ag.accuracy):>7}   "
              f"{ks.mean():.3f} ± {ks.std(ddof=1):.3f}, min {ks.min():.3f}")
    kappas = [ag.kappa for ag in r.pairwise.values()]
    print(f"  {'mean of the 10 pairs':<22}{np.mean(kappas):>7.3f}")
    print("\nEach scorer against the consensus (pooled)")
    print(f"  {'scorer':<10}{'vs other 4: kappa':>19}{'acc':>7}{'ties left out':>15}"
          f"{'vs all 5: kappa':>17}{'acc':>7}")
    for s in SCORERS:
        o = r.versus_others[s]
        a = agreement(five.stages, pooled[s])
        print(f"  {s:<10}{_f(o.kappa):>19}{_f(o.accuracy):>7}{r.ties_of_others[s]:>15}"
              f"{_f(a.kappa):>17}{_f(a.accuracy):>7}")
    print(f"  {'mean':<10}{np.mean([r.versus_others[s].kappa for s in SCORERS]):>19.3f}")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print(f"# bench_inter_scorer — machine: {platform.node()} ({platform.machine()}, "
          f"{platform.processor() or platform.system()}), Python {platform.python_version()}; "
          f"git {git_commit()}; {dt.datetime.now().isoformat(timespec='seconds')}")
    if not DATA.is_dir():
        print(f"SKIP: Dreem DOD scorings not found at {DATA} (../shared/data is absent)")
        return 0
    report("dodh", "DOD-H (healthy adults)")
    report("dodo", "DOD-O (obstructive sleep apnea)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
