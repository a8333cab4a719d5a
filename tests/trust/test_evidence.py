"""AASM evidence measured from signals: planted waveforms are found in the right epoch, role
and time; the rules derived and checked from them are the ones a technologist would cite."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.signals.montage import auto_montage
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.core.synth import generate_night
from sleepvlm_ws.core.synth import waveforms as wf
from sleepvlm_ws.core.synth import write_night_edf
from sleepvlm_ws.core.trust.evidence import (EpochEvidence, check_rule, derive_rules, measure_night,
                                             measure_recording, rationale_sentences, write_rationale)
from sleepvlm_ws.core.trust.evidence.detectors import SLOW_WAVE_PTP_UV

FS = 256.0
SPE = int(30 * FS)
S = Stage
STAGES = [S.W, S.W, S.N1, S.N2, S.N2, S.N2, S.N3, S.N3, S.N2, S.R, S.R, S.W]
N = len(STAGES)


def _at(epoch: int, sec: float) -> int:
    return epoch * SPE + int(sec * FS)


def _planted() -> dict[str, np.ndarray]:
    """Twelve epochs of quiet background with waveforms planted at known places."""
    rng = np.random.default_rng(11)
    n = N * SPE
    sig = {r: 4.0 * wf.band_noise(n, FS, 0.5, 30.0, rng) + 3.0 * wf.band_noise(n, FS, 4.0, 7.0, rng)
           for r in ("F4-M1", "C4-M1", "O2-M1")}
    sig["LOC"] = 2.0 * wf.band_noise(n, FS, 0.5, 30.0, rng)
    sig["ROC"] = 2.0 * wf.band_noise(n, FS, 0.5, 30.0, rng)
    chin_level = {S.W: 12.0, S.N1: 7.0, S.N2: 6.0, S.N3: 6.0, S.R: 1.5}
    gain = np.repeat([chin_level[s] for s in STAGES], SPE).astype(np.float32)
    sig["CHIN"] = gain * wf.band_noise(n, FS, 12.0, 110.0, rng)
    # Eyes-closed wake: 10 Hz alpha on O2 through epochs 0-1 (and one blink train in epoch 1).
    t = np.arange(2 * SPE) / FS
    sig["O2-M1"][: 2 * SPE] += 30.0 * np.sin(2 * np.pi * 10.0 * t)
    for sec in np.arange(1.0, 29.0, 2.5):
        b = wf.blink(FS, 120.0)
        wf.add_at(sig["LOC"], _at(1, sec), b)
        wf.add_at(sig["ROC"], _at(1, sec), b)
    # Spindles: epoch 3 at 5.0 s (C4 maximal); epoch 4 at 20.0 s (second half, for epoch 5).
    for epoch, sec in ((3, 5.0), (4, 20.0)):
        sp = wf.spindle(FS, 13.0, 1.2, 30.0)
        wf.add_at(sig["C4-M1"], _at(epoch, sec), sp)
        wf.add_at(sig["F4-M1"], _at(epoch, sec), 0.5 * sp)
    # Slow waves: 1 Hz, 160 uV peak-to-peak on F4 over 12 s of epochs 6 and 7.
    tw = np.arange(int(12 * FS)) / FS
    for epoch in (6, 7):
        wf.add_at(sig["F4-M1"], _at(epoch, 10.0), 80.0 * np.sin(2 * np.pi * 1.0 * tw))
    # A K complex in epoch 8 at 12.0 s.
    wf.add_at(sig["F4-M1"], _at(8, 12.0), wf.k_complex(FS, 150.0))
    # Rapid eye movements (out of phase on LOC/ROC) in epoch 9 at 4, 11 and 19 s.
    for sec in (4.0, 11.0, 19.0):
        rem = wf.eye_movement(FS, 90.0, 0.12, 0.4)
        wf.add_at(sig["LOC"], _at(9, sec), rem)
        wf.add_at(sig["ROC"], _at(9, sec), -rem)
    return sig


@pytest.fixture(scope="module")
def planted():
    sig = _planted()
    return sig, measure_night({r: (x, FS) for r, x in sig.items()}, N)


def test_alpha_wake_is_measured_and_cites_w1(planted):
    _, ev = planted
    assert ev[0].alpha_fraction > 0.9 and ev[1].alpha_fraction > 0.9
    assert all(e.alpha_fraction < 0.2 for e in ev[2:])
    assert "W.1" in derive_rules(ev, 0, STAGES)
    assert ev[1].blinks >= 10 and ev[0].blinks == 0
    assert "W.2" in derive_rules(ev, 1, STAGES)
    check = check_rule("W.1", ev, 0, STAGES)
    assert check.verdict == "supported" and "O2-M1" in check.reason


def test_spindle_lands_in_its_epoch_role_and_time(planted):
    _, ev = planted
    c4 = [s for s in ev[3].spindles if s[0] == "C4-M1"]
    assert len(c4) == 1
    role, onset, dur, freq, amp = c4[0]
    assert abs(onset - 5.0) < 0.4 and 0.6 < dur < 2.0 and 12.0 <= freq <= 14.0 and amp > 30
    assert all(not e.spindles for i, e in enumerate(ev) if i not in (3, 4))
    assert derive_rules(ev, 3, STAGES) == ["N2.1"]


def test_spindle_in_previous_second_half_starts_n2(planted):
    _, ev = planted
    assert [s[1] for s in ev[4].spindles if s[0] == "C4-M1"] == [pytest.approx(20.0, abs=0.4)]
    assert ev[5].previous_late_events and ev[5].previous_late_events[0][0] == "spindle"
    assert "N2.1" in derive_rules(ev, 5, STAGES)
    # epoch 4's own spindle is in its second half: it does not start N2 there, N2.2 continues it
    assert derive_rules(ev, 4, STAGES) == ["N2.2"]


def test_slow_waves_give_n3(planted):
    _, ev = planted
    for i in (6, 7):
        assert 10.0 <= ev[i].slow_wave_seconds <= 14.5  # 12 s planted; the filter blurs the edges
        assert derive_rules(ev, i, STAGES) == (["N3.1"] if i == 7 else ["N2.4", "N3.1"])
        assert check_rule("N3.1", ev, i, STAGES).verdict == "supported"
        assert np.median([w[1] for w in ev[i].slow_waves]) > 140  # 160 uV planted
    assert all(e.slow_wave_seconds < 2 for i, e in enumerate(ev) if i not in (6, 7))
    # epoch 8 after N3 without slow waves: N2 continues by N2.3 (the K complex also starts N2)
    assert check_rule("N2.3", ev, 8, STAGES).verdict == "supported"


def test_k_complex_found_on_f4(planted):
    _, ev = planted
    assert len(ev[8].k_complexes) == 1
    onset, ptp, dur = ev[8].k_complexes[0]
    assert abs(onset - 12.0) < 0.5 and ptp > 100 and dur >= 0.5
    assert "N2.1" in derive_rules(ev, 8, STAGES)


def test_rems_and_low_chin_give_r1_then_r2(planted):
    _, ev = planted
    times = [t for t, _ in ev[9].rems]
    for planted_t in (4.0, 11.0, 19.0):
        assert any(abs(t - planted_t) < 0.4 for t in times)
    assert all(not e.rems for i, e in enumerate(ev) if i != 9)
    assert ev[9].chin_low and ev[10].chin_low and not ev[0].chin_low
    assert derive_rules(ev, 9, STAGES) == ["N2.4", "R.1"]  # N2 ends at the transition to R
    assert derive_rules(ev, 10, STAGES) == ["R.2"]
    assert check_rule("R.1", ev, 10, STAGES).verdict == "contradicted"  # no REMs there


def test_false_claims_are_contradicted_with_a_readable_reason(planted):
    _, ev = planted
    n3 = check_rule("N3.1", ev, 3, STAGES)
    assert n3.verdict == "contradicted"
    assert "F4-M1" in n3.reason and "N3 needs 6 s" in n3.reason
    assert check_rule("W.1", ev, 7, STAGES).verdict == "contradicted"
    assert check_rule("N2.1", ev, 10, STAGES).verdict == "contradicted"
    assert check_rule("R.1", ev, 3, STAGES).verdict == "contradicted"
    assert check_rule("N2.2", ev, 0, STAGES).verdict == "contradicted"


def test_rationales_and_reasons_read_as_a_technologist_writes(planted):
    """Units as µV, no figure that says nothing ("for 0.0 s, under 6 s", "1.00 of its range")."""
    _, ev = planted
    texts = [write_rationale(STAGES[i], ev, i, STAGES) for i in range(N)]
    texts += [check_rule(rule, ev, i, STAGES).reason for i in range(N)
              for rule in ("N3.1", "W.1", "R.1", "R.2", "N2.1")]
    joined = " ".join(texts)
    assert "µV" in joined and " uV" not in joined and "of its range" not in joined
    assert "for 0.0 s" not in joined and "night's range" not in joined
    n2 = write_rationale(S.N2, ev, 4, STAGES)                  # no slow waves in epoch 4
    assert "Not N3: no slow waves over 75 µV on F4-M1." in n2
    assert "no slow waves over 75 µV on F4-M1 (N3 needs 6 s)" == check_rule("N3.1", ev, 4, STAGES).reason
    wake = write_rationale(S.W, ev, 0, STAGES)
    assert "Chin EMG tone" in wake and ("night's highest level" in wake or "of the way from" in wake)


def test_missing_channel_is_not_measurable():
    sig = _planted()
    del sig["F4-M1"]
    del sig["O2-M1"]
    ev = measure_night({r: (x, FS) for r, x in sig.items()}, N)
    assert not ev[6].is_measurable("slow_waves") and ev[6].slow_wave_seconds == 0
    n3 = check_rule("N3.1", ev, 6, STAGES)
    assert n3.verdict == "not_measurable" and "slow_waves" in n3.reason
    assert check_rule("W.1", ev, 0, STAGES).verdict == "not_measurable"
    assert "N3.1" not in derive_rules(ev, 6, STAGES)
    # spindles are still measured on C4-M1
    assert ev[3].is_measurable("spindles") and ev[3].spindles
    text = write_rationale(S.N3, ev, 6, STAGES)
    assert "Not measurable" in text and "slow_waves" in text


def test_movement_artefact_supports_mbm():
    sig = _planted()
    rng = np.random.default_rng(3)
    burst = 200.0 * wf.band_noise(int(20 * FS), FS, 0.5, 60.0, rng)
    for role in ("F4-M1", "C4-M1", "O2-M1"):
        wf.add_at(sig[role], _at(11, 5.0), burst)
    ev = measure_night({r: (x, FS) for r, x in sig.items()}, N)
    assert 18 <= ev[11].artefact_seconds <= 22
    assert all(e.artefact_seconds == 0 for e in ev[:11])
    assert check_rule("MBM.1", ev, 11, STAGES).verdict == "supported"  # some alpha is visible
    assert check_rule("MBM.1", ev, 10, STAGES).verdict == "contradicted"
    assert measure_night({r: (x, FS) for r, x in sig.items()}, 0) == []


def test_nan_gap_makes_an_epoch_not_measurable():
    sig = _planted()
    sig["F4-M1"][6 * SPE:7 * SPE] = np.nan
    ev = measure_night({r: (x, FS) for r, x in sig.items()}, N)
    assert not ev[6].is_measurable("slow_waves") and ev[7].is_measurable("slow_waves")
    assert check_rule("N3.1", ev, 6, STAGES).verdict == "not_measurable"


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
FIELDS = {f.name for f in dataclasses.fields(EpochEvidence)}


def _values(ev, key) -> list[str]:
    """Every number the field holds, formatted loosely (for matching the sentence's numbers)."""
    v = getattr(ev, key)
    flat: list[float] = []

    def walk(x):
        if isinstance(x, dict):
            for y in x.values():
                walk(y)
        elif isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
        elif isinstance(x, (int, float, np.floating)) and not isinstance(x, bool):
            flat.append(float(x))
    walk(v)
    return flat


@pytest.mark.parametrize("i", range(N))
def test_every_rationale_sentence_is_backed_by_a_measurement(planted, i):
    _, ev = planted
    sentences = rationale_sentences(STAGES[i], ev, i, STAGES)
    assert sentences
    for s in sentences:
        assert s.keys and set(s.keys) <= FIELDS, s
        names_gone = re.sub(r"\b[A-Z][A-Za-z]*\d[\w.-]*", "", s.text)  # F4-M1, N3, W.1 ...
        numbers = [float(x) for x in _NUMBER.findall(names_gone)]
        backed = _values(ev[i], s.keys[0]) + [len(getattr(ev[i], k)) for k in s.keys
                                              if isinstance(getattr(ev[i], k), list)]
        fixed = {0.5, 2, 8, 13, 75, 6, 1, 0}  # thresholds and band edges named by the rules
        for num in numbers:
            ok = num in fixed or any(abs(num - b) <= 0.051 * max(1, abs(b)) or abs(num - 100 * b) <= 0.6
                                     or abs(num - b / 30 * 100) <= 0.6 for b in backed)
            ok = ok or any(abs(num - b) <= 0.6 for k in s.keys for b in _values(ev[i], k)
                           + [100 * x for x in _values(ev[i], k)])
            assert ok, (num, s)
    text = write_rationale(STAGES[i], ev, i, STAGES)
    assert text == " ".join(s.text for s in sentences)


def test_rationale_names_channel_time_and_excludes_other_stages(planted):
    _, ev = planted
    n3 = write_rationale(S.N3, ev, 6, STAGES)
    assert "F4-M1" in n3 and "Not W" in n3 and "Not R" in n3
    n2 = write_rationale(S.N2, ev, 3, STAGES)
    assert "C4-M1 at 5." in n2 and "Hz" in n2 and "Not N3" in n2


@pytest.fixture(scope="module")
def synthetic_night():
    stages = [S.W] * 4 + [S.N1] * 2 + [S.N2] * 10 + [S.N3] * 8 + [S.N2] * 2 + [S.R] * 8 + [S.W] * 2
    return generate_night(seed=5, fs=FS, stages=stages)


def test_generated_night_detections_match_planted_events(synthetic_night):
    night = synthetic_night
    ev = measure_night({r: (x, night.fs) for r, x in night.signals.items()}, len(night.stages))
    spindles = [t for t, k in night.events if k == "spindle"]
    found = [i * 30 + s[1] for i, e in enumerate(ev) for s in e.spindles if s[0] == "C4-M1"]
    hits = sum(any(abs(f - t) < 0.6 for f in found) for t in spindles)
    assert spindles and hits >= 0.5 * len(spindles)
    n3 = [i for i, s in enumerate(night.stages) if s is S.N3]
    assert sum(ev[i].slow_wave_seconds >= 6 for i in n3) >= 0.75 * len(n3)
    assert sum("N3.1" in derive_rules(ev, i, night.stages) for i in n3) >= 0.75 * len(n3)
    n2 = [i for i, s in enumerate(night.stages) if s is S.N2]
    assert sum(ev[i].slow_wave_seconds >= 6 for i in n2) <= 0.2 * len(n2)
    rems = [t for t, k in night.events if k == "rem"]
    rem_found = [i * 30 + r[0] for i, e in enumerate(ev) for r in e.rems]
    if rems:
        assert sum(any(abs(f - t) < 0.5 for f in rem_found) for t in rems) >= 0.5 * len(rems)


def test_measure_recording_reads_the_montage_from_a_real_edf(tmp_path, synthetic_night):
    night = synthetic_night
    path = write_night_edf(night, tmp_path / "night.edf")
    with Recording.open(path) as rec:
        montage = auto_montage([c.label for c in rec.channels])
        ev = measure_recording(rec, montage)
    direct = measure_night({r: (x, night.fs) for r, x in night.signals.items()}, len(night.stages))
    assert len(ev) == len(night.stages)
    # The EDF stores 0.1 uV steps, so a wave whose peak-to-peak lies within a few steps of the
    # detector's 75 uV threshold may fall on either side of it: only such waves (which may run
    # into the next epoch) may make the two counts differ.
    def borderline_seconds(evidence, k):
        return sum(w[2] for e in evidence[max(0, k - 1):k + 1] for w in e.slow_waves
                   if abs(w[1] - SLOW_WAVE_PTP_UV) < 0.5)
    for k, (a, b) in enumerate(zip(ev, direct)):
        allowed = 0.02 + max(borderline_seconds(ev, k), borderline_seconds(direct, k))
        assert abs(a.slow_wave_seconds - b.slow_wave_seconds) <= allowed, k
        assert a.alpha_fraction == pytest.approx(b.alpha_fraction, abs=0.1)
        assert a.measurable == b.measurable
