"""Rationale claims and cited rules checked against the signal: waveforms planted at known
places in a real EDF file, measured through the per-epoch evidence cache; a fake answer's
false claims are contradicted, its true ones supported."""

from __future__ import annotations

import re

import pytest
from planted_evidence import (FS, K_COMPLEX, REMS, SLOW_WAVES, SPINDLE, STAGES, S, planted_signals,
                              write_planted_edf)

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.signals.montage import auto_montage
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.core.study.suggestions import Suggestion
from sleepvlm_ws.core.trust.evidence import measure_night, write_rationale
from sleepvlm_ws.core.trust.evidence.claims import check_claims, find_claims
from sleepvlm_ws.core.trust.evidence.epoch_cache import EvidenceCache
from sleepvlm_ws.core.trust.evidence.rules_check import check_suggestion, hypnogram_neighbours


@pytest.fixture(scope="module")
def evidence(tmp_path_factory):
    """Per-epoch evidence of the planted recording, as the UI gets it (EvidenceCache)."""
    path = write_planted_edf(tmp_path_factory.mktemp("claims") / "planted.edf")
    with Recording.open(path) as rec:
        cache = EvidenceCache(rec, auto_montage([c.label for c in rec.channels]))
        return [cache.get(e).evidence for e in range(len(STAGES))]


def verdicts(text: str, ev) -> list[tuple[str, str]]:
    return [(c.text, c.verdict) for c in check_claims(text, ev)]


# -- finding claims --------------------------------------------------------------------------
@pytest.mark.parametrize("text, kind, negated, lead, time_s, amount", [
    ("Spindle in C4 at 12 s.", "spindle", False, "C4-M1", 12.0, None),
    ("sleep spindles in C4-M1", "spindle", False, "C4-M1", None, None),
    ("a K-complex at 3.5 seconds", "k_complex", False, None, 3.5, None),
    ("slow waves over 20% of the epoch", "slow_wave", False, None, None, (">=", 20.0, "%")),
    ("delta waves occupying 35% of the epoch", "slow_wave", False, None, None, ("~", 35.0, "%")),
    ("Alpha rhythm in O2 for more than half of the epoch", "alpha", False, "O2-M1", None,
     (">=", 50.0, "%")),
    ("alpha attenuated, replaced by LAMF", "alpha", False, None, None, ("<", 50.0, "%")),
    ("Rapid eye movements on LOC/ROC", "rem", False, None, None, None),
    ("Not N2: no sleep spindles in the epoch", "spindle", True, None, None, None),
    ("REMs are absent", "rem", True, None, None, None),
    ("low chin EMG tone", "chin_low", False, None, None, None),
    ("chin atonia", "chin_low", False, None, None, None),
    ("elevated chin tone", "chin_high", False, None, None, None),
])
def test_claims_are_found_with_their_lead_time_and_amount(text, kind, negated, lead, time_s, amount):
    claims = find_claims(text)
    assert len(claims) == 1, claims
    c = claims[0]
    assert (c.kind, c.negated, c.lead, c.time_s, c.amount) == (kind, negated, lead, time_s, amount)
    assert 0 <= c.start < c.end <= len(text)


def test_a_list_after_one_negation_denies_each_and_spans_do_not_overlap():
    text = "Not N2: no sleep spindles or K complexes here, and a sleep spindle at 4 s later."
    claims = find_claims(text)
    assert [(c.kind, c.negated) for c in claims] == [("spindle", True), ("k_complex", True),
                                                      ("spindle", False)]
    assert text[claims[0].start:claims[0].end] == "no sleep spindles"
    assert all(a.end <= b.start for a, b in zip(claims, claims[1:]))
    assert find_claims("The stage is N2 because of a spindle at 4 s")[0].negated is False
    assert find_claims("Nothing here to check: stage N2, arousal.") == []


# -- checking them ---------------------------------------------------------------------------
def test_a_planted_false_spindle_claim_is_contradicted_and_a_true_one_supported(evidence):
    ev = evidence[SPINDLE[0]]
    answer = "N2. There is a sleep spindle in C4 at 12 s. A spindle on C4-M1 at 5 s starts N2."
    checks = check_claims(answer, ev)
    assert [(c.text, c.verdict) for c in checks] == [
        ("sleep spindle in C4 at 12 s", "contradicted"), ("spindle on C4-M1 at 5 s", "supported")]
    assert "12 s" in checks[0].reason and re.search(r"C4-M1 at (4\.[6-9]|5\.[0-4]) s", checks[0].reason)
    assert answer[checks[0].start:checks[0].end] == checks[0].text
    # the same claim in an epoch without spindles: none detected at all
    assert verdicts("sleep spindles in C4-M1", evidence[4]) == [("sleep spindles in C4-M1", "contradicted")]
    assert verdicts("no sleep spindles", evidence[4]) == [("no sleep spindles", "supported")]
    assert verdicts("no sleep spindles", ev) == [("no sleep spindles", "contradicted")]


def test_slow_wave_amounts_alpha_and_k_complexes(evidence):
    n3, n2 = evidence[SLOW_WAVES[0]], evidence[SPINDLE[0]]
    assert verdicts("slow waves occupying 40% of the epoch", n3)[0][1] == "supported"
    assert verdicts("slow waves over 20%", n3)[0][1] == "supported"
    assert verdicts("slow waves over 20%", n2)[0][1] == "contradicted"
    check = check_claims("slow waves occupying 90% of the epoch", n3)[0]
    assert check.verdict == "contradicted" and "F4-M1" in check.reason and "90%" in check.reason
    assert verdicts("alpha in O2 over 50%", evidence[0])[0][1] == "supported"
    assert verdicts("alpha in O2 over 50%", n2)[0][1] == "contradicted"
    assert verdicts("no alpha rhythm", n2)[0][1] == "supported"
    k = evidence[K_COMPLEX[0]]
    assert verdicts("a K complex at 12 s", k) == [("K complex at 12 s", "supported")]
    assert verdicts("a K complex at 25 s", k)[0][1] == "contradicted"
    assert verdicts("no K complexes", k)[0][1] == "contradicted"


def test_eye_movements_and_chin_tone(evidence):
    rem, wake = evidence[REMS[0]], evidence[0]
    assert [v for _, v in verdicts("Rapid eye movements with low chin tone (chin atonia).", rem)] == \
        ["supported", "supported", "supported"]
    assert verdicts("no rapid eye movements", rem)[0][1] == "contradicted"
    check = check_claims("chin atonia", wake)[0]
    assert check.verdict == "contradicted" and "µV RMS" in check.reason
    assert verdicts("high chin tone", wake)[0][1] == "supported"


def test_a_missing_channel_makes_claims_not_measurable(tmp_path):
    path = write_planted_edf(tmp_path / "no_chin.edf", roles=["F4-M1", "C4-M1", "LOC", "ROC"])
    with Recording.open(path) as rec:
        ev = EvidenceCache(rec, auto_montage([c.label for c in rec.channels])).get(REMS[0]).evidence
    checks = check_claims("Rapid eye movements, low chin tone, alpha over 50%.", ev)
    assert [c.verdict for c in checks] == ["supported", "not_measurable", "not_measurable"]
    assert "chin" in checks[1].reason and "O2-M1" in checks[2].reason


@pytest.mark.parametrize("epoch", range(len(STAGES)))
def test_our_own_rationale_holds_up_against_the_checker(evidence, epoch):
    """The rationale written from the measurements never contradicts them."""
    text = write_rationale(STAGES[epoch], evidence, epoch, STAGES)
    checks = check_claims(text, evidence[epoch])
    assert checks, text
    assert [c for c in checks if c.verdict != "supported"] == []


def test_the_cache_agrees_with_the_whole_night_measurement(evidence):
    night = measure_night({r: (x, FS) for r, x in planted_signals().items()}, len(STAGES))
    for a, b in zip(evidence, night):
        assert [s[0] for s in a.spindles] == [s[0] for s in b.spindles]
        assert [s[1] for s in a.spindles] == pytest.approx([s[1] for s in b.spindles], abs=0.1)
        assert a.slow_wave_seconds == pytest.approx(b.slow_wave_seconds, abs=0.5)
        assert a.chin_relative == pytest.approx(b.chin_relative, abs=0.05)
        assert len(a.rems) == len(b.rems) and a.alpha_fraction == pytest.approx(b.alpha_fraction, abs=0.05)


# -- cited rules against the hypnogram -------------------------------------------------------
def _suggestion(epoch: int, stage: Stage, rules, rationale=None) -> Suggestion:
    return Suggestion(epoch=epoch, model_id="m", renderer_version="r", pass_name="fast",
                      stage=stage, stage_text=stage.value, rules=tuple(rules), rationale=rationale)


def test_neighbour_rules_are_checked_against_the_hypnogram(evidence):
    after_n2 = _suggestion(4, S.N2, ["N2.2", "N2.1", "N3.1"])
    checks = check_suggestion(after_n2, evidence[4], (S.N2, S.N3))
    assert [(c.rule_id, c.verdict) for c in checks] == [
        ("N2.2", "supported"), ("N2.1", "contradicted"), ("N3.1", "contradicted")]
    checks = check_suggestion(after_n2, evidence[4], (S.W, None))
    assert checks[0].verdict == "contradicted" and "previous epoch scored W" in checks[0].reason
    r2 = check_suggestion(_suggestion(6, S.R, ["R.1", "R.2"]), evidence[REMS[0]], (S.N3, S.R))
    assert [c.verdict for c in r2] == ["supported", "supported"]
    # the technologist's decision wins over the model's suggestion; unscored falls back to it
    scored = [S.W, S.N2, S.UNSCORED, S.UNSCORED]
    suggested = [None, S.N3, S.N2, S.R]
    assert hypnogram_neighbours(scored, suggested, 2) == (S.N2, S.R)
    assert hypnogram_neighbours(scored, None, 2) == (S.N2, None)
    assert hypnogram_neighbours(scored, suggested, 0) == (None, S.N2)
