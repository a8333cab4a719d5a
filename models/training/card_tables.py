"""Print the model card's evaluation tables from evaluate_heldout.py's output folder.

    python models/training/card_tables.py HELDOUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STAGES = ("W", "N1", "N2", "N3", "R")


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}"


def _k(v):
    return "-" if v is None else f"{v:.3f}"


def main(folder: str) -> int:
    d = Path(folder)
    summary = json.loads((d / "heldout-summary.json").read_text())
    print("| subject | recording | epochs | kappa | accuracy % | macro-F1 | recall W/N1/N2/N3/R % | YASA kappa | parsed w/o repair | rules = targets % |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for seed, what in summary["subjects"].items():
        f = d / f"heldout-{seed}-Q4_K_M.json"
        if not f.is_file():
            continue
        r = json.loads(f.read_text())
        m, y = r["model_agreement"], r["yasa_agreement"]
        rec = "/".join(_pct(m["recall"].get(s)) for s in STAGES)
        yk = _k(y["kappa"]) if y else "n/a (" + (r["yasa_unavailable"] or "").split(": ")[-1] + ")"
        p = r["parse"]
        print(f"| {seed} | {what} | {m['n_epochs']} | {_k(m['kappa'])} | {_pct(m['accuracy'])} | "
              f"{_k(m['macro_f1'])} | {rec} | {yk} | {p['parsed_without_repair']}/{p['answers']} | "
              f"{_pct(r['rules'].get('exact'))} |")
    runs = summary.get("runs", {})
    if "Q4_K_M" in runs:
        pm = runs["Q4_K_M"]["pooled"]["model_agreement"]
        py = runs["Q4_K_M"]["pooled"]["yasa_agreement"]
        print()
        print(f"Pooled over all subjects (Q4_K_M): kappa {_k(pm['kappa'])}, accuracy {_pct(pm['accuracy'])} %, "
              f"macro-F1 {_k(pm['macro_f1'])}, N1 recall {_pct(pm['recall'].get('N1'))} % "
              f"({pm['n_epochs']} epochs); YASA on the epochs it could stage: kappa {_k(py['kappa'] if py else None)}.")
        print()
        print("Confusion (pooled, Q4_K_M; rows reference, columns predicted):")
        print()
        print("| | " + " | ".join(pm["confusion"]["labels"]) + " |")
        print("| --- " * (len(pm["confusion"]["labels"]) + 1) + "|")
        for s, row in zip(pm["confusion"]["labels"], pm["confusion"]["counts"]):
            print(f"| {s} | " + " | ".join(str(c) for c in row) + " |")
    if "F16" in runs and "Q4_K_M" in runs:
        print()
        print("| subject | kappa f16 | kappa Q4_K_M | difference (points) |")
        print("| --- | --- | --- | --- |")
        for seed, a in runs["F16"]["per_subject"].items():
            b = runs["Q4_K_M"]["per_subject"].get(seed)
            if b:
                print(f"| {seed} | {_k(a['kappa'])} | {_k(b['kappa'])} | {100 * (a['kappa'] - b['kappa']):+.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
