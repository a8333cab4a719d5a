"""The fused stage: the model's and the second opinion's probabilities pooled by a fixed rule."""

from __future__ import annotations

import math

import pytest

from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.trust.fusion import FLOOR, fuse, fused_stage

W, N1, N2, N3, R = SLEEP_STAGES


def dist(**p) -> dict[Stage, float]:
    total = sum(p.values())
    return {s: p.get(s.value, 0.0) / total for s in SLEEP_STAGES}


def test_pool_is_the_normalised_geometric_mean():
    m = dist(W=0.6, N1=0.3, N2=0.1)
    y = dist(W=0.2, N1=0.2, N2=0.6)
    pooled = fuse(m, y)
    assert math.isclose(sum(pooled.values()), 1.0, rel_tol=1e-12)
    raw = {s: math.sqrt(max(m[s], FLOOR) * max(y[s], FLOOR)) for s in SLEEP_STAGES}
    for s in SLEEP_STAGES:
        assert pooled[s] == pytest.approx(raw[s] / sum(raw.values()), rel=1e-9)
    # sqrt(.6*.2)=.346, sqrt(.3*.2)=.245, sqrt(.1*.6)=.245: W wins although YASA put N2 first
    assert fused_stage(m, y) == W


def test_equal_weights_are_symmetric_and_a_flat_opinion_changes_nothing():
    m = dist(N2=0.5, N3=0.4, R=0.1)
    y = dist(N3=0.7, N2=0.3)
    assert fuse(m, y) == pytest.approx(fuse(y, m))
    flat = {s: 0.2 for s in SLEEP_STAGES}
    assert fused_stage(m, flat) == N2 and fused_stage(flat, y) == N3
    # a flat opinion leaves the model's ranking as it was
    pooled = fuse(m, flat)
    assert sorted(SLEEP_STAGES, key=pooled.get) == sorted(SLEEP_STAGES, key=lambda s: max(m[s], FLOOR))


def test_a_stage_both_put_first_stays_first():
    for m, y in [(dist(R=0.4, N1=0.35, W=0.25), dist(R=0.9, W=0.1)),
                 (dist(N3=0.51, N2=0.49), dist(N3=0.34, N2=0.33, N1=0.33))]:
        top = max(m, key=m.get)
        assert top == max(y, key=y.get) and fused_stage(m, y) == top


def test_a_near_zero_cannot_veto_on_its_own():
    # the model is sure of N1; YASA gives N1 nothing: without the floor N1 would get 0, with it
    # sqrt(.999 x .001) = .032 beats W's and N2's sqrt(.001 x .5) = .022
    m = dist(N1=0.999, W=0.001)
    y = dist(W=0.5, N2=0.5)
    assert fuse(m, y)[N1] > 0.3 and fused_stage(m, y) == N1
    # a less sure model loses to YASA's opinion
    assert fused_stage(dist(N1=0.6, W=0.4), y) == W
    # with the model's weight at 1 the pool is the model's own distribution (floored)
    assert fused_stage(m, y, model_weight=1.0) == N1
    assert fused_stage(m, y, model_weight=0.0) in (W, N2)


def test_stage_values_missing_and_bad_numbers():
    assert fused_stage({"N2": 0.9, "W": 0.1}, {"N2": 0.6, "N3": 0.4}) == N2
    assert fused_stage({"R": float("nan"), "W": 1.0}, {"R": None, "W": 0.5, "N1": 0.5}) == W
    with pytest.raises(ValueError, match="model_weight"):
        fuse({}, {}, model_weight=1.5)
