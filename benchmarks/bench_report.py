"""Time to gather and write the PDF study report of an 8-h night (960 epochs), with and
without AI suggestions, and the time of the statistics and agreement alone.

Run: .venv/bin/python benchmarks/bench_report.py [repeats=3]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.model.answer import format_answer, parse_answer
from sleepvlm_ws.core.signals.montage import Montage
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study.study import IMPORTED, Study
from sleepvlm_ws.core.study.suggestions import SuggestionKey, SuggestionStore
from sleepvlm_ws.core.trust.agreement import agreement
from sleepvlm_ws.core.trust.report import write_report
from sleepvlm_ws.core.trust.sleep_statistics import sleep_statistics

N_EPOCHS = 960


def night(rng: random.Random) -> list[Stage]:
    out, current = [], Stage.W
    for _ in range(N_EPOCHS):
        if rng.random() < 0.1:
            current = rng.choice(SLEEP_STAGES)
        out.append(current)
    return out


def main(repeats: int = 3) -> None:
    rng = random.Random(0)
    stages = night(rng)
    ai = [s if rng.random() < 0.8 else rng.choice(SLEEP_STAGES) for s in stages]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        study = Study.create(folder / "bench.sleepvlm", recording_path=folder / "none.edf",
                             n_epochs=N_EPOCHS, montage=Montage(), scorer="bench")
        study.score_many(list(enumerate(stages)), scorer="bench", source=IMPORTED)
        t = time.perf_counter()
        for _ in range(repeats):
            sleep_statistics(stages)
        rows.append(("sleep_statistics (960 epochs)", (time.perf_counter() - t) / repeats))
        t = time.perf_counter()
        for _ in range(repeats):
            agreement(stages, ai)
        rows.append(("agreement (960 epochs)", (time.perf_counter() - t) / repeats))
        for label in ("report, no AI", "report, with AI suggestions"):
            if "with AI" in label:
                store = SuggestionStore(study)
                with study.batch():
                    for e, s in enumerate(ai):
                        store.put(e, parse_answer(format_answer(s.value, ["N2.1"], None)),
                                  SuggestionKey("e" * 64, RENDERER_VERSION, "fast"))
            t = time.perf_counter()
            for i in range(repeats):
                write_report(study, folder / f"r{i}.pdf", author="bench", pack_dirs=[])
            rows.append((label, (time.perf_counter() - t) / repeats))
        study.close()
    print(f"| step ({repeats} repeats) | seconds |\n|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.4f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
