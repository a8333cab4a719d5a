"""Agreement among several scorers and their consensus: worked examples first, then the 80 real
nights of the Dreem Open Datasets, each scored by five technologists (read from ../shared/data
when present, never copied; skipped with the reason when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.trust.agreement import NoCommonEpochsError, agreement
from sleepvlm_ws.core.trust.consensus import consensus
from sleepvlm_ws.core.trust.inter_scorer import (compare_scorers, differing_epochs, fleiss_from_counts,
                                                 fleiss_kappa)

W, N1, N2, N3, R, U, A = (Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R, Stage.UNSCORED,
                          Stage.ARTEFACT)
DOD = Path(__file__).resolve().parents[3] / "shared" / "data" / "hypnograms" / "dreem-dod" / "scorers"
needs_dod = pytest.mark.skipif(not DOD.is_dir(), reason=f"Dreem DOD scorings absent ({DOD})")
DREEM = {-1: U, 0: W, 1: N1, 2: N2, 3: N3, 4: R}


def test_fleiss_kappa_of_the_worked_example_in_fleiss_1971():
    # 10 subjects, 14 raters, 5 categories: the example every text on Fleiss' kappa works
    # through (P bar 0.378, P bar e 0.213, kappa 0.210).
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    kappa, per, observed, chance = fleiss_from_counts(counts)
    assert round(observed, 3) == 0.378 and round(chance, 3) == 0.213 and round(kappa, 3) == 0.210
    assert all(-1 <= k <= 1 for k in per) and max(per) == per[4]   # category 5 most agreed
    with pytest.raises(ValueError, match="same number"):
        fleiss_from_counts([[1, 2], [3, 1]])


def test_fleiss_kappa_of_two_scorers_is_scotts_pi_and_ignores_unscored_epochs():
    a = [W, W, N2, N2, N2, R, N1, U]
    b = [W, N1, N2, N2, N3, R, N1, N2]
    f = fleiss_kappa({"a": a, "b": b})
    assert f.n_epochs == 7 and f.n_excluded == 1 and f.n_scorers == 2
    # Scott's pi: (po - pe) / (1 - pe), pe from the pooled stage shares of both scorers
    pooled = a[:7] + b[:7]
    pe = sum((pooled.count(s) / 14) ** 2 for s in (W, N1, N2, N3, R))
    po = 5 / 7
    assert f.kappa == pytest.approx((po - pe) / (1 - pe))
    assert fleiss_kappa([[W, W, R], [W, W, R], [W, W, R]]).kappa == pytest.approx(1.0)
    with pytest.raises(NoCommonEpochsError):
        fleiss_kappa([[W, U], [U, W]])
    with pytest.raises(ValueError, match="at least two"):
        fleiss_kappa([[W]])


def test_consensus_keeps_ties_for_adjudication_and_adjudication_settles_only_ties():
    s = {"amy": [W, N1, N2, N2, U, A], "bob": [W, N2, N2, N3, U, W],
         "cho": [W, N1, N3, N3, U, U], "dan": [W, N2, N2, R, U, U]}
    c = consensus(s)
    assert c.stages == (W, None, N2, N3, U, W)          # epoch 1: N1 2 / N2 2 -> tie
    assert c.ties == (1,) and c.unsettled == [1] and c.tied_stages(1) == [N1, N2]
    assert c.scorers == ("amy", "bob", "cho", "dan")
    settled = c.adjudicated({1: N1})
    assert settled.stages[1] is N1 and settled.unsettled == [] and settled.settled == {1: N1}
    with pytest.raises(ValueError, match="not a tie"):
        c.adjudicated({2: N3})
    with pytest.raises(ValueError, match="tied between N1, N2, not R"):
        c.adjudicated({1: R})
    assert consensus(s, break_ties="ranked").ties == (1,)    # still listed, but decided
    assert consensus(s, break_ties="ranked").stages[1] in (N1, N2)
    with pytest.raises(ValueError, match="different numbers of epochs"):
        consensus({"a": [W], "b": [W, W]})


def test_compare_scorers_lists_where_they_differ_and_each_against_the_others():
    s = {"amy": [W, N1, N2, N2, R, U], "bob": [W, N2, N2, N2, R, W], "cho": [W, N1, N2, N3, R, W]}
    report = compare_scorers(s)
    assert [d.epoch for d in report.differing] == [1, 3]     # epoch 5: only amy abstained
    assert report.differing[0].text() == "epoch 2: N1 (amy, cho), N2 (bob)"
    assert set(report.pairwise) == {("amy", "bob"), ("amy", "cho"), ("bob", "cho")}
    assert report.pairwise[("amy", "bob")].kappa == agreement(s["amy"], s["bob"]).kappa
    # bob against the consensus of amy and cho: they tie at epoch 3 (N2/N3), left out; at
    # epoch 5 cho alone scored (W)
    assert report.ties_of_others["bob"] == 1 and report.versus_others["bob"].n_epochs == 5
    assert report.fleiss.n_epochs == 5
    assert json.loads(json.dumps(report.to_dict()))["differing_epochs"] == [1, 3]
    with pytest.raises(ValueError, match="at least two"):
        compare_scorers({"amy": s["amy"]})


def test_differing_epochs_counts_the_stages_given():
    d = differing_epochs({"a": [N1, W], "b": [N2, W], "c": [N3, None]})
    assert [(x.epoch, x.n_stages) for x in d] == [(0, 3)]
    assert d[0].text() == "epoch 1: N1 (a), N2 (b), N3 (c)"


def _dod_night(subset: str, record: str) -> dict[str, list[Stage]]:
    rows = {f"scorer {k}": [DREEM[int(c)] for c in json.loads(
        (DOD / subset / f"scorer_{k}" / record).read_text())] for k in range(1, 6)}
    n = min(len(r) for r in rows.values())
    return {k: v[:n] for k, v in rows.items()}


@needs_dod
@pytest.mark.parametrize("subset, nights", [("dodh", 25), ("dodo", 55)])
def test_five_real_technologists_agree_substantially_but_not_perfectly(subset, nights):
    records = sorted(p.name for p in (DOD / subset / "scorer_1").glob("*.json"))
    assert len(records) == nights
    pooled: dict[str, list[Stage]] = {f"scorer {k}": [] for k in range(1, 6)}
    tie_share, differ_share = [], []
    for record in records:
        night = _dod_night(subset, record)
        for k, v in night.items():
            pooled[k].extend(v)
        c = consensus(night)
        n = len(c.stages)
        tie_share.append(len(c.ties) / n)
        differ_share.append(len(differing_epochs(night)) / n)
    report = compare_scorers(pooled)
    f = report.fleiss
    # Real scorers: substantial agreement (Landis & Koch 0.61-0.80 and above), never perfect;
    # N1 the least agreed stage, as every inter-scorer study finds.
    assert 0.6 < f.kappa < 0.9 and f.n_epochs > 0.85 * report.n_epochs
    assert min(f.per_stage, key=f.per_stage.get) is N1
    kappas = [a.kappa for a in report.pairwise.values()]
    assert len(kappas) == 10 and 0.5 < min(kappas) <= max(kappas) < 0.95
    # each scorer agrees with the other four's consensus at least as well as with a typical colleague
    for scorer, ag in report.versus_others.items():
        mean_pair = np.mean([a.kappa for (x, y), a in report.pairwise.items() if scorer in (x, y)])
        assert ag.kappa > mean_pair
    # they differ somewhere on every night, but five-way ties are rare
    assert min(differ_share) > 0.05 and np.mean(tie_share) < 0.05
