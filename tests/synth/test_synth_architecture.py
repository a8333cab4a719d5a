"""Night-architecture statistics (core/synth/architecture.py) and the real hypnograms they are
compared with (read from ../shared/data when present, never copied)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.synth import draw_hypnogram
from sleepvlm_ws.core.synth.architecture import (ORDER, architecture, consensus, read_dreem_scoring,
                                                 row_normalised, runs, trim_wake)

W, N1, N2, N3, R, U, A = Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R, Stage.UNSCORED, Stage.ARTEFACT
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "hypnograms"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real hypnograms absent ({DATA})")


def _i(s: Stage) -> int:
    return ORDER.index(s)


def test_hand_built_night():
    # 4 W (latency 2 min) | N1 2 | N2 6 | W 2 | N1 1 | N2 4 | N3 6 | N2 2 | R 4 | W 3 (final)
    night = [W] * 4 + [N1] * 2 + [N2] * 6 + [W] * 2 + [N1] + [N2] * 4 + [N3] * 6 + [N2] * 2 + [R] * 4 + [W] * 3
    a = architecture(night)
    assert a.tib_min == len(night) / 2 == 17.0
    assert a.sol_min == 2.0
    assert a.tst_min == (2 + 6 + 1 + 4 + 6 + 2 + 4) / 2
    assert a.waso_min == 1.0                      # only the W inside the sleep period
    assert a.awakenings == 1
    assert a.rem_latency_min == (2 + 6 + 2 + 1 + 4 + 6 + 2) / 2
    assert a.stage_pct_tst[N3] == pytest.approx(100 * 6 / 25)
    # Bouts within the sleep period, in minutes.
    assert a.bouts_min[N2] == [3.0, 2.0, 1.0]
    assert a.bouts_min[N1] == [1.0, 0.5]
    assert a.bouts_min[W] == [1.0]
    assert a.bouts_min[N3] == [3.0] and a.bouts_min[R] == [2.0]
    assert a.bout_summary(N2) == pytest.approx((2.0, 2.0, 2.8))
    # Epoch transitions within the sleep period (24 pairs in 25 + 2 W epochs).
    t = a.transitions
    assert t.sum() == 27 - 1
    assert t[_i(N2), _i(N2)] == 5 + 3 + 1 and t[_i(N2), _i(W)] == 1 and t[_i(N2), _i(N3)] == 1
    assert t[_i(N3), _i(N3)] == 5 and t[_i(N2), _i(R)] == 1 and t[_i(W), _i(N1)] == 1
    assert t[_i(R), _i(W)] == 0                   # the final awakening is outside the period
    p = row_normalised(t)
    assert p[_i(N2), _i(N2)] == pytest.approx(9 / 12)
    # Bout changes: N1>N2, N2>W, W>N1, N1>N2, N2>N3, N3>N2, N2>R.
    b = a.bout_transitions
    assert b.sum() == 7 and np.trace(b) == 0
    assert b[_i(N1), _i(N2)] == 2 and b[_i(N2), _i(R)] == 1 and b[_i(N3), _i(N2)] == 1
    assert a.rem_periods == 1 and a.cycle_min is None


def test_rem_periods_and_cycle_length():
    # REM at 0-5 min, a 10-min gap (same period), REM, then 20 min of N2 (a new period), REM.
    night = [W, N1] + [R] * 10 + [N2] * 20 + [R] * 4 + [N2] * 40 + [R] * 6 + [W]
    a = architecture(night)
    assert a.rem_periods == 2                     # the 10-min gap is under 15 min
    # onsets at sleep-period epochs 1 and 1 + 10 + 20 + 4 + 40 = 75: 74 epochs = 37 min
    assert a.cycle_min == 37.0
    assert a.bouts_min[R] == [5.0, 2.0, 3.0]


def test_unscored_and_artefact_split_bouts_and_skip_pairs():
    night = [W, N2, N2, U, N2, A, A, N2, N2, W]
    a = architecture(night)
    assert a.bouts_min[N2] == [1.0, 0.5, 1.0]
    assert a.transitions.sum() == 2               # N2>N2 twice; pairs with U / A skipped
    assert a.bout_transitions.sum() == 0          # N2 .. N2 across a gap is no change


def test_runs():
    assert runs([W, W, N1, W]) == [(W, 0, 2), (N1, 2, 1), (W, 3, 1)]
    assert runs([]) == []


def test_trim_wake_keeps_30_minutes_each_side():
    night = [U] * 5 + [W] * 200 + [N2] * 10 + [W] * 100 + [A] + [U] * 7
    out = trim_wake(night)
    assert out == [W] * 60 + [N2] * 10 + [W] * 60
    assert trim_wake([W] * 10 + [N1] + [W] * 2 + [U] * 3) == [W] * 10 + [N1] + [W] * 2
    assert trim_wake([W, W]) == [W, W]


def test_consensus_majority_and_ties():
    s1 = [W, N1, N2, N2, U]
    s2 = [W, N2, N2, N3, U]
    s3 = [W, N1, N2, N3, U]
    assert consensus([s1, s2, s3]) == [W, N1, N2, N3, U]
    # Four scorers, two against two at epochs 4 and 5. s3 agrees most with the others
    # (11 epochs agreeing with the other three, summed; s1 and s2 10, s4 3), so its labels
    # break the ties.
    s1 = [W, W, N2, N2, N1, N2, N1]
    s2 = [W, W, N2, N2, N2, N3, N2]
    s3 = [W, W, N2, N2, N1, N3, R]
    s4 = [R, R, R, R, N2, N2, R]
    c = consensus([s1, s2, s3, s4])
    assert c == [W, W, N2, N2, N1, N3, R]
    assert consensus([s1, s2, s4, s3])[5] is N3      # whatever the scorers' order
    with pytest.raises(ValueError):
        consensus([s1, s2[:3]])


def test_generated_nights_have_plausible_architecture():
    # Loose bounds around the real healthy-adult spread (docs/measurements/synth-architecture.txt).
    archs = [architecture(draw_hypnogram(np.random.default_rng(s), 8.0)) for s in range(20)]
    mean = lambda k: float(np.mean([a.scalars()[k] for a in archs]))  # noqa: E731
    assert 3 <= mean("N1 % TST") <= 12
    assert 10 <= mean("WASO (min)") <= 70
    assert 85 <= mean("NREM-REM cycle (min)") <= 115
    assert mean("N1 bout median (min)") <= 1.5 and mean("W bout median (min)") <= 1.5
    assert mean("awakenings (n)") >= 8
    assert sum(all(s in set(draw_hypnogram(np.random.default_rng(k), 8.0)) for s in ORDER)
               for k in range(20)) >= 18


def test_short_nights_still_show_several_stages():
    for hours in (0.5, 1.0, 3.0):
        for seed in range(10):
            st = draw_hypnogram(np.random.default_rng(seed), hours)
            assert len(st) == int(hours * 120) and st[0] is W and st[-1] is W
            assert len(set(st)) >= (3 if hours < 1 else 4), (hours, seed)
    a = draw_hypnogram(np.random.default_rng(5), 8.0)
    assert a == draw_hypnogram(np.random.default_rng(5), 8.0)     # deterministic per seed


@needs_data
def test_importer_reads_all_sleep_edf_hypnograms():
    from sleepvlm_ws.core.study.formats import import_hypnogram

    files = sorted((DATA / "sleep-edf").glob("*-Hypnogram.edf"))
    assert len(files) == 20
    total = 0
    for f in files:
        stages = import_hypnogram(f).stages
        total += len(stages)
        night = trim_wake(stages)
        assert set(night) >= {W, N1, N2, R} and night[0] is W and night[-1] is W
        a = architecture(night)
        assert 200 < a.tst_min < 700 and a.sol_min == 30.0
    assert total == 57_600                        # as listed in shared/data/README.md


@needs_data
@pytest.mark.parametrize("subset,n", [("dodh", 25), ("dodo", 55)])
def test_dreem_consensus_reads_into_stage_lists(subset, n):
    base = DATA / "dreem-dod" / "scorers" / subset
    records = sorted(p.name for p in (base / "scorer_1").glob("*.json"))
    assert len(records) == n
    for rec in records[:6]:
        scorings = [read_dreem_scoring(base / f"scorer_{k}" / rec) for k in range(1, 6)]
        m = min(len(s) for s in scorings)
        night = consensus([s[:m] for s in scorings])
        assert len(night) == m > 500
        assert set(night) <= set(ORDER) | {U}
        assert architecture(night).tst_min > 60
