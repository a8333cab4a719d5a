"""Calibration maths on hand-computed examples: ECE, the reliability table, MCE, Brier."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.trust.calibration import (Calibration, brier_score, calibrate,
                                                expected_calibration_error, format_table,
                                                maximum_calibration_error, reliability_table)

# seven suggestions: confidence, right?
CONF = [0.05, 0.15, 0.95, 0.95, 1.0, 0.55, 0.45]
RIGHT = [False, False, True, False, True, True, False]


def test_reliability_table_by_hand():
    bins = reliability_table(CONF, RIGHT, n_bins=10)
    assert len(bins) == 10
    assert [b.count for b in bins] == [1, 1, 0, 0, 1, 1, 0, 0, 0, 3]   # 1.0 joins the last bin
    assert (bins[0].lower, bins[0].upper) == (0.0, 0.1)
    assert bins[9].mean_confidence == pytest.approx((0.95 + 0.95 + 1.0) / 3)
    assert bins[9].accuracy == pytest.approx(2 / 3)
    assert bins[9].gap == pytest.approx(2 / 3 - 2.9 / 3)                # overconfident
    assert (bins[4].mean_confidence, bins[4].accuracy) == (0.45, 0.0)
    assert (bins[5].mean_confidence, bins[5].accuracy) == (0.55, 1.0)
    assert bins[2].count == 0 and bins[2].mean_confidence is None and bins[2].gap is None


def test_expected_and_maximum_calibration_error_by_hand():
    # gaps 0.05, 0.15, 0.45, 0.45 (one each) and 0.3 (three): (0.05+0.15+0.45+0.45+0.9)/7 = 2/7
    assert expected_calibration_error(CONF, RIGHT, n_bins=10) == pytest.approx(2 / 7)
    assert maximum_calibration_error(CONF, RIGHT, n_bins=10) == pytest.approx(0.45)
    # one bin: |accuracy - mean confidence| over everything = |3/7 - 4.1/7|
    assert expected_calibration_error(CONF, RIGHT, n_bins=1) == pytest.approx(1.1 / 7)


def test_bin_edges_are_half_open_and_the_last_bin_is_closed():
    bins = reliability_table([0.25, 0.5, 0.75, 1.0, 0.0], [True] * 5, n_bins=4)
    assert [b.count for b in bins] == [1, 1, 1, 2]      # 0.25 -> [0.25, 0.5); 1.0 -> last bin


def test_a_perfectly_calibrated_set_has_no_error():
    conf = [0.8] * 5 + [0.2] * 5
    right = [True] * 4 + [False] + [True] + [False] * 4
    assert expected_calibration_error(conf, right) == pytest.approx(0.0)


def test_brier_score_by_hand():
    probs = [{Stage.W: 0.7, Stage.N1: 0.2, Stage.N2: 0.1}, {Stage.N2: 1.0}]
    # (0.3^2 + 0.2^2 + 0.1^2) = 0.14 and (1 + 1) = 2 -> mean 1.07
    assert brier_score(probs, [Stage.W, Stage.N3]) == pytest.approx(1.07)
    with pytest.raises(ValueError):
        brier_score(probs, [Stage.W])
    with pytest.raises(ValueError):
        brier_score(probs, [Stage.W, Stage.UNSCORED])


def test_calibrate_puts_it_together_and_the_table_prints():
    probs = [{Stage.W: c, Stage.N1: 1 - c} for c in CONF]
    truth = [Stage.W if r else Stage.N1 for r in RIGHT]
    cal = calibrate(CONF, RIGHT, probabilities=probs, truth=truth)
    assert isinstance(cal, Calibration) and cal.n == 7
    assert cal.accuracy == pytest.approx(3 / 7) and cal.mean_confidence == pytest.approx(4.1 / 7)
    assert cal.ece == pytest.approx(2 / 7) and cal.mce == pytest.approx(0.45)
    expected_brier = sum(2 * (1 - c) ** 2 if r else 2 * c ** 2 for c, r in zip(CONF, RIGHT)) / 7
    assert cal.brier == pytest.approx(expected_brier)
    table = format_table(cal).splitlines()
    assert table[0].startswith("| bin | count | mean confidence | accuracy")
    assert "| [0.9, 1.0] | 3 | 0.967 | 0.667 | -0.300 |" in table
    assert "| [0.2, 0.3) | 0 | - | - | - |" in table
    assert calibrate([], []).n == 0 and math.isnan(calibrate([], []).ece)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        reliability_table([0.5], [True, False])
    with pytest.raises(ValueError):
        reliability_table([1.5], [True])
    with pytest.raises(ValueError):
        reliability_table([float("nan")], [True])
    with pytest.raises(ValueError):
        reliability_table([0.5], [True], n_bins=0)
    with pytest.raises(ValueError):
        calibrate([0.5], [True], probabilities=[{Stage.W: 1.0}])


def test_calibration_and_stage_confidence_import_no_qt_and_no_llama():
    code = ("import sys; import sleepvlm_ws.core.trust.calibration, sleepvlm_ws.core.model.stage_confidence; "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'llama_cpp'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
