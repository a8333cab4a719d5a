"""Sleep statistics: hand-counted hypnograms, then YASA on random nights for every shared figure.

Definitional differences from ``yasa`` (0.8), checked below rather than hidden:
- YASA's latencies (``Lat_REM`` of ``Hypnogram.sleep_statistics``, ``Lat_N2``/``Lat_N3`` of the
  older ``yasa.sleep_statistics``) run from the start of the hypnogram; ours (the AASM's) from
  sleep onset, so ours = YASA's - SOL.
- YASA analyses the whole array it is given; we analyse lights off .. lights on, so YASA gets
  the same slice.
- YASA has no awakening count or stage shifts (its SFI counts sleep -> W transitions per hour,
  which includes the final awakening); those are checked by hand only.
"""

import random
import warnings

import numpy as np
import pytest

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.trust.sleep_statistics import SLEEP, format_value, sleep_statistics

W, N1, N2, N3, R, A, U = (Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R, Stage.ARTEFACT,
                          Stage.UNSCORED)

# 21 epochs of 30 s:  0  1  2  3   4   5   6  7  8   9   10  11 12  13 14 15 16  17 18 19 20
NIGHT = [U, W, W, N1, N2, N2, W, W, N2, N3, N3, A, N3, R, R, W, N2, R, W, W, U]


def test_hand_counted_night_with_default_lights():
    s = sleep_statistics(NIGHT)
    assert (s.lights_off, s.lights_on) == (1, 20)     # first scored .. after last scored
    assert (s.sleep_onset, s.final_awakening) == (3, 18)
    assert s.tib_min == 9.5                            # epochs 1..19
    assert s.tst_min == 5.5                            # 11 sleep epochs
    assert s.spt_min == 7.5                            # epochs 3..17
    assert s.sleep_efficiency_pct == pytest.approx(100 * 5.5 / 9.5)
    assert s.sol_min == 1.0
    assert (s.latency_n2_min, s.latency_n3_min, s.latency_r_min) == (0.5, 3.0, 5.0)
    assert s.waso_min == 1.5                           # epochs 6, 7, 15
    assert s.stage_min == {W: 3.5, N1: 0.5, N2: 2.0, N3: 1.5, R: 1.5}
    assert s.stage_pct_tst[N1] == pytest.approx(100 / 11)
    assert s.stage_pct_tst[N2] == pytest.approx(400 / 11)
    assert s.stage_pct_tst[N3] == s.stage_pct_tst[R] == pytest.approx(300 / 11)
    assert s.artefact_min == 0.5 and s.unscored_min == 0.0
    # SPT = TST + WASO + artefact inside it
    assert s.spt_min == s.tst_min + s.waso_min + s.artefact_min
    assert s.awakenings == 2                           # W runs {6, 7} and {15}
    # W W N1 N2 N2 W W N2 N3 N3 (A) N3 R R W N2 R W W: the artefact between N3s is no shift
    assert s.stage_shifts == 10


def test_explicit_lights_off_and_on():
    s = sleep_statistics(NIGHT, lights_off=0, lights_on=21)
    assert s.tib_min == 10.5 and s.unscored_min == 1.0
    assert s.sol_min == 1.5
    assert s.tst_min == 5.5 and s.sleep_efficiency_pct == pytest.approx(100 * 5.5 / 10.5)
    # lights on before the last R: it and what follows are out of the night
    s = sleep_statistics(NIGHT, lights_off=2, lights_on=16)
    assert s.tib_min == 7.0 and s.sol_min == 0.5
    assert s.final_awakening == 15 and s.tst_min == 4.5
    assert s.waso_min == 1.0 and s.awakenings == 1
    assert s.stage_min[W] == 2.0  # epochs 2, 6, 7, 15


def test_unscored_and_artefact_never_count_as_sleep_or_wake_and_are_skipped_in_runs():
    night = [W, N2, A, N2, U, N2, W, A, W, N2, U, W, N2, W]
    s = sleep_statistics(night)
    assert s.tst_min == 2.5 and s.spt_min == 6.0       # 5 N2 epochs; SPT epochs 1..12
    assert s.waso_min == 1.5                           # epochs 6, 8, 11
    assert s.artefact_min == 1.0 and s.unscored_min == 1.0
    assert s.awakenings == 2                           # W A W is one awakening; then W at 11
    assert s.spt_min == s.tst_min + s.waso_min + s.artefact_min + s.unscored_min
    # W N2 N2 N2 W W N2 W N2 W (artefact / unscored dropped): 6 changes
    assert s.stage_shifts == 6


def test_no_sleep_and_missing_stages():
    s = sleep_statistics([W] * 6)
    assert s.tst_min == 0 and s.spt_min == 0 and s.sleep_efficiency_pct == 0
    assert s.sol_min is s.waso_min is s.latency_n2_min is s.latency_r_min is None
    assert s.sleep_onset is None and s.awakenings == 0 and s.stage_shifts == 0
    assert all(s.stage_pct_tst[st] is None for st in SLEEP)
    s = sleep_statistics([W, N1, N2, N2, W])
    assert s.latency_n3_min is None and s.latency_r_min is None and s.latency_n2_min == 0.5
    assert s.stage_pct_tst[N3] == 0.0


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="no epoch is scored"):
        sleep_statistics([U, U, U])
    with pytest.raises(ValueError, match="lights off"):
        sleep_statistics(NIGHT, lights_off=5, lights_on=5)
    with pytest.raises(ValueError, match="lights off"):
        sleep_statistics(NIGHT, lights_on=22)
    with pytest.raises(ValueError, match="epoch index"):
        sleep_statistics(NIGHT, lights_off=1.5)


def test_rows_give_every_figure_with_units():
    s = sleep_statistics(NIGHT)
    rows = s.rows()
    table = {label: (value, unit) for label, value, unit in rows}
    assert table["Total sleep time (TST)"] == (5.5, "min")
    assert table["REM latency (from sleep onset)"] == (5.0, "min")
    assert table["Lights off"] == ("epoch 2", "")
    assert table["REM (% of TST)"] == (pytest.approx(300 / 11), "%")
    assert table["Awakenings"] == (2, "n") and table["Stage shifts"] == (10, "n")
    assert all(len(r) == 3 and isinstance(r[0], str) for r in rows)
    from datetime import datetime

    clock = {label: v for label, v, _ in s.rows(datetime(2024, 1, 1, 22, 0, 0))}
    assert clock["Lights off"] == "22:00:30" and clock["Lights on"] == "22:10:00"
    assert format_value(None) == "—" and format_value(57.8947) == "57.9"
    assert format_value(3) == "3"
    d = s.to_dict()
    assert d["stage_min"]["N2"] == 2.0 and d["tst_min"] == 5.5


# -- against YASA -----------------------------------------------------------------------
_YASA = {W: "WAKE", N1: "N1", N2: "N2", N3: "N3", R: "REM", A: "ART", U: "UNS"}
_YASA_INT = {W: 0, N1: 1, N2: 2, N3: 3, R: 4, A: -1, U: -2}


def _random_night(rng: random.Random, n: int) -> list[Stage]:
    """A Markov-ish night: long runs, occasional artefact / unscored, unscored ends."""
    stages, current = [], W
    for _ in range(n):
        if rng.random() < 0.15:
            current = rng.choice([W, W, N1, N2, N2, N2, N3, R, R, A, U])
        stages.append(current)
    lead, tail = rng.randint(0, 5), rng.randint(0, 5)
    return [U] * lead + stages + [U] * tail


def _close(ours, theirs):
    if ours is None:
        return np.isnan(theirs)
    return ours == pytest.approx(float(theirs), abs=1e-3)


@pytest.mark.parametrize("seed", range(25))
def test_agrees_with_yasa_on_every_shared_figure(seed):
    yasa = pytest.importorskip("yasa")
    rng = random.Random(seed)
    night = _random_night(rng, rng.randint(20, 400))
    if seed % 3 == 0:    # explicit lights, inside the night
        scored = [i for i, s in enumerate(night) if s.is_scored]
        off = rng.randint(0, scored[0] + 3)
        on = rng.randint(max(off + 2, scored[-1] - 3), len(night))
        s = sleep_statistics(night, lights_off=off, lights_on=on)
    else:
        s = sleep_statistics(night)
    part = night[s.lights_off:s.lights_on]
    if len(part) < 2 or not any(x.is_sleep for x in part):
        pytest.skip("YASA needs two epochs and some sleep for the latencies")
    y = yasa.Hypnogram([_YASA[x] for x in part], n_stages=5).sleep_statistics()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # the older function has Lat_N2/N3
        old = yasa.sleep_statistics([_YASA_INT[x] for x in part], sf_hyp=1 / 30)
    pairs = {
        "TIB": s.tib_min, "TST": s.tst_min, "SPT": s.spt_min, "WASO": s.waso_min,
        "SE": s.sleep_efficiency_pct, "SOL": s.sol_min,
        "WAKE": s.stage_min[W], "N1": s.stage_min[N1], "N2": s.stage_min[N2],
        "N3": s.stage_min[N3], "REM": s.stage_min[R],
        "%N1": s.stage_pct_tst[N1], "%N2": s.stage_pct_tst[N2], "%N3": s.stage_pct_tst[N3],
        "%REM": s.stage_pct_tst[R],
    }
    for key, ours in pairs.items():
        assert _close(ours, y[key]), (key, ours, y[key])
    assert _close(s.artefact_min, y.get("ART", 0.0)) and _close(s.unscored_min, y.get("UNS", 0.0))
    # latencies: YASA counts from the start of what it was given, the AASM from sleep onset
    assert _close(s.latency_r_min, y["Lat_REM"] - y["SOL"])
    assert _close(s.latency_n2_min, old["Lat_N2"] - old["SOL"])
    assert _close(s.latency_n3_min, old["Lat_N3"] - old["SOL"])
