"""Realism of the synthetic nights, judged by a stager trained on thousands of real nights.

YASA's pretrained stager runs on a generated 3-hour night; it must recognise the generator's
stages (Cohen's kappa) and find every stage present (recall per stage).
"""

from __future__ import annotations

import warnings

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.synth import generate_night

# Measured 0.940 for this night (seed 11, 3 h, 100 Hz; docs/synth-realism.md); margin for
# library-version drift in YASA / LightGBM / MNE.
KAPPA_FLOOR = 0.85


def test_yasa_recognises_the_generated_stages():
    from sleepvlm_ws.core.synth.realism import yasa_agreement

    night = generate_night(seed=11, hours=3.0, fs=100.0)
    assert {Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R} <= set(night.stages)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # sklearn: YASA's model was pickled by an older version
        result = yasa_agreement(night)
    assert result["confusion"].sum() == len(night.stages)
    assert result["kappa"] >= KAPPA_FLOOR, result
    for stage, recall in result["recall"].items():
        assert recall > 0.3, (stage, result["recall"])
