"""Print the model card's evaluation tables from evaluate_heldout.py's output folder.

    python models/training/card_tables.py HELDOUT_DIR

The last table is the stage the workstation offers by default (core/review/suggested_stage.py:
YASA's where it staged the epoch, else the model's), from each epoch's ``offered`` (for output
written before evaluate kept it: YASA's stage where there is one, else the model's, which is the
same wherever the model answered every epoch, as evaluate_heldout's runs do).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / "app")]

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
    offered_table(d, summary)
    return 0


def offered_table(d: Path, summary: dict) -> None:
    """Per subject and pooled: the stage as offered against the generator's labels."""
    from sleepvlm_ws.core.base.stages import Stage
    from sleepvlm_ws.core.trust.agreement import agreement

    def stage(v):
        return Stage(v) if v else None

    print()
    print("As offered by default (YASA's stage where it staged the epoch, else the model's):")
    print()
    print("| subject | recording | epochs | from YASA | kappa | accuracy % | macro-F1 | recall W/N1/N2/N3/R % |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    ref_all, off_all = [], []
    for seed, what in summary["subjects"].items():
        f = d / f"heldout-{seed}-Q4_K_M.json"
        if not f.is_file():
            continue
        epochs = json.loads(f.read_text())["epochs"]
        ref = [stage(e["reference"]) for e in epochs]
        off = [stage(e.get("offered", e["yasa"] or e["predicted"])) for e in epochs]
        ref_all += ref
        off_all += off
        a = agreement(ref, off)
        rec = "/".join(_pct(a.recall.get(Stage(s))) for s in STAGES)
        print(f"| {seed} | {what} | {a.n_epochs} | {sum(1 for e in epochs if e['yasa'])} | "
              f"{_k(a.kappa)} | {_pct(a.accuracy)} | {_k(a.macro_f1)} | {rec} |")
    if ref_all:
        a = agreement(ref_all, off_all)
        rec = "/".join(_pct(a.recall.get(Stage(s))) for s in STAGES)
        print(f"| pooled | all subjects | {a.n_epochs} | | {_k(a.kappa)} | {_pct(a.accuracy)} | "
              f"{_k(a.macro_f1)} | {rec} |")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
