"""Draw a training run's loss curves: python models/training/plot_curves.py RUN_DIR (writes curves.png)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(run_dir: str) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, phase, title in ((axes[0], 1, "phase 1: per-second band power / amplitude (MSE, z)"),
                             (axes[1], 2, "phase 2: answer tokens (cross-entropy)")):
        pts = [(r["step"], r["loss"]) for r in rows if r.get("phase") == phase and "loss" in r and "event" not in r]
        if pts:
            ax.plot(*zip(*pts), lw=1.2)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=100)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
