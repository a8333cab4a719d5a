"""Agreement between two scorings, checked by hand and against sklearn.metrics."""

import json
import random
import warnings

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, cohen_kappa_score, confusion_matrix, f1_score, precision_score,
                             recall_score)

from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.trust.agreement import NoCommonEpochsError, agreement
from sleepvlm_ws.errors import InputError

W, N1, N2, N3, R, A, U = (Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R, Stage.ARTEFACT,
                          Stage.UNSCORED)
LABELS = [s.value for s in SLEEP_STAGES]


def test_hand_counted():
    ref = [W, W, N2, N2, N2, N3, R, R, A, U, N1]
    cmp = [W, N1, N2, N2, N3, N3, R, N2, N2, N2, None]
    a = agreement(ref, cmp)
    assert a.n_epochs == 8 and a.n_excluded == 3      # artefact, unscored, None left out
    assert a.n_agree == 5 and a.accuracy == 5 / 8
    # rows reference W N1 N2 N3 R; columns compared
    assert a.confusion == ((1, 1, 0, 0, 0),
                           (0, 0, 0, 0, 0),
                           (0, 0, 2, 1, 0),
                           (0, 0, 0, 1, 0),
                           (0, 0, 1, 0, 1))
    assert a.recall == {W: 0.5, N1: None, N2: 2 / 3, N3: 1.0, R: 0.5}
    assert a.precision == {W: 1.0, N1: 0.0, N2: 2 / 3, N3: 0.5, R: 1.0}
    # chance: rows (2,0,3,1,2) x cols (1,1,3,2,1) / 64 = (2 + 9 + 2 + 2) / 64
    pe = 15 / 64
    assert a.kappa == pytest.approx((5 / 8 - pe) / (1 - pe))
    # F1 per stage: W 2/3, N1 0 (only compared used it), N2 2/3, N3 2/3, R 2/3
    assert a.f1[N1] == 0.0
    assert a.macro_f1 == pytest.approx((4 * 2 / 3) / 5)


def _sk(ref, cmp):
    pairs = [(r.value, c.value) for r, c in zip(ref, cmp)
             if r in SLEEP_STAGES and c is not None and c in SLEEP_STAGES]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.mark.parametrize("seed", range(30))
def test_matches_sklearn_on_random_scorings(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 300)
    pool = rng.sample(list(SLEEP_STAGES), rng.randint(1, 5)) + [A, U]
    ref = [rng.choice(pool) for _ in range(n)]
    # the compared scoring agrees often, like a real second scorer, and sometimes says nothing
    cmp = [r if rng.random() < 0.6 else rng.choice(list(SLEEP_STAGES) + [None]) for r in ref]
    y_true, y_pred = _sk(ref, cmp)
    if not y_true:
        with pytest.raises(NoCommonEpochsError):
            agreement(ref, cmp)
        return
    a = agreement(ref, cmp)
    assert a.n_epochs == len(y_true) and a.n_excluded == n - len(y_true)
    assert a.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert np.array_equal(np.array(a.confusion), confusion_matrix(y_true, y_pred, labels=LABELS))
    assert a.macro_f1 == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kappa = cohen_kappa_score(y_true, y_pred, labels=LABELS)
    if a.kappa is None:
        assert np.isnan(kappa) and len(set(y_true) | set(y_pred)) == 1
    else:
        assert a.kappa == pytest.approx(kappa)
    rec = recall_score(y_true, y_pred, labels=LABELS, average=None, zero_division=np.nan)
    prec = precision_score(y_true, y_pred, labels=LABELS, average=None, zero_division=np.nan)
    for i, stage in enumerate(SLEEP_STAGES):
        for ours, theirs in ((a.recall[stage], rec[i]), (a.precision[stage], prec[i])):
            assert (ours is None and np.isnan(theirs)) or ours == pytest.approx(theirs)


def test_single_class_and_perfect_agreement():
    a = agreement([N2] * 10, [N2] * 10)
    assert a.accuracy == 1.0 and a.kappa is None        # chance agreement is 1: undefined
    assert a.macro_f1 == 1.0 and a.recall[N2] == 1.0 and a.recall[W] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # sklearn warns that kappa is undefined here
        assert np.isnan(cohen_kappa_score(["N2"] * 10, ["N2"] * 10))
    a = agreement([N2] * 10, [N3] * 10)                   # one class each, never agreeing
    assert a.accuracy == 0.0 and a.kappa == 0.0 and a.macro_f1 == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert a.kappa == pytest.approx(cohen_kappa_score(["N2"] * 10, ["N3"] * 10))
    ref = [W, N1, N2, N3, R] * 4
    a = agreement(ref, list(ref))
    assert a.kappa == 1.0 and a.accuracy == 1.0 and a.macro_f1 == 1.0


def test_no_overlap_and_mismatched_lengths_are_clear_errors():
    with pytest.raises(NoCommonEpochsError, match="no epoch has a sleep stage in both"):
        agreement([W, N2, U, A], [None, U, N2, N2])
    with pytest.raises(InputError):        # the CLI turns it into one line and exit 2
        agreement([], [])
    with pytest.raises(ValueError, match="different numbers of epochs"):
        agreement([W, N2], [W])


def test_to_dict_is_plain_json():
    a = agreement([W, N2, N2, R], [W, N2, N3, R])
    d = json.loads(json.dumps(a.to_dict()))
    assert d["n_epochs"] == 4 and d["accuracy"] == 0.75
    assert d["recall"] == {"W": 1.0, "N1": None, "N2": 0.5, "N3": None, "R": 1.0}
    assert d["confusion"]["labels"] == LABELS and d["confusion"]["rows"] == "reference"
    assert d["confusion"]["counts"][2] == [0, 0, 1, 1, 0]
