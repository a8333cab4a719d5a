"""Montage: label matching, bipolar derivation and reading a role from a real EDF."""

from __future__ import annotations

import numpy as np
import pytest
from edf_factory import sine, write_discontinuous_edf, write_psg_edf

from sleepvlm_ws.core.signals.montage import (ROLES, Derivation, Montage, auto_montage, montage_summary,
                                              read_role, unknown_labels)
from sleepvlm_ws.core.signals.montage_rules import normalise
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.errors import RecordingError

D = Derivation


def roles(labels):
    return auto_montage(labels).roles


# ---------------------------------------------------------------------------------------------
# Label matching


def test_aasm_bipolar_labels_in_many_spellings():
    labels = ["EEG F4-M1", "eeg c4:m1", "O2 – M1", "EOG E1-M2", "E2:M1", "EMG Chin1-Chin2",
              "ECG", "SpO2"]
    assert roles(labels) == {
        "F4-M1": D("EEG F4-M1"), "C4-M1": D("eeg c4:m1"), "O2-M1": D("O2 – M1"),
        "LOC": D("EOG E1-M2"), "ROC": D("E2:M1"), "CHIN": D("EMG Chin1-Chin2")}


def test_sleep_edf_gives_a_reduced_montage():
    labels = ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "Resp oro-nasal", "EMG submental",
              "Temp rectal", "Event marker"]
    m = auto_montage(labels)
    assert m.roles == {"F4-M1": D("EEG Fpz-Cz"), "C4-M1": None, "O2-M1": D("EEG Pz-Oz"),
                       "LOC": D("EOG horizontal"), "ROC": None, "CHIN": D("EMG submental")}
    assert m.missing == ["C4-M1", "ROC"]


def test_mass_linked_ears_and_chin_derived_from_referential_chins():
    labels = ["EEG F4-LER", "EEG C4-LER", "EEG O2-LER", "EEG C3-LER", "EOG Left Horiz",
              "EOG Right Horiz", "EMG Chin1", "EMG Chin2", "EMG Chin3"]
    assert roles(labels) == {
        "F4-M1": D("EEG F4-LER"), "C4-M1": D("EEG C4-LER"), "O2-M1": D("EEG O2-LER"),
        "LOC": D("EOG Left Horiz"), "ROC": D("EOG Right Horiz"),
        "CHIN": D("EMG Chin1", "EMG Chin2")}


def test_referential_channels_are_derived_into_bipolar_pairs():
    labels = ["F4", "C4", "O2", "M1", "M2", "E1", "E2", "Chin1", "Chin2"]
    assert roles(labels) == {
        "F4-M1": D("F4", "M1"), "C4-M1": D("C4", "M1"), "O2-M1": D("O2", "M1"),
        "LOC": D("E1", "M2"), "ROC": D("E2", "M1"), "CHIN": D("Chin1", "Chin2")}


def test_ref_style_labels_and_earlobe_references():
    labels = ["EEG F4-Ref", "EEG C3-REF", "EEG O1-Ref", "EEG A1-Ref", "EEG A2-Ref", "LOC", "ROC",
              "EMG chin"]
    assert roles(labels) == {
        "F4-M1": D("EEG F4-Ref", "EEG A1-Ref"), "C4-M1": D("EEG C3-REF", "EEG A2-Ref"),
        "O2-M1": D("EEG O1-Ref", "EEG A2-Ref"), "LOC": D("LOC", "EEG A2-Ref"),
        "ROC": D("ROC", "EEG A1-Ref"), "CHIN": D("EMG chin")}


def test_alternates_when_the_right_hemisphere_is_missing():
    labels = ["EEG F3-A2", "EEG C3-A2", "EEG O1-A2", "EOG L", "EOG R", "Chin"]
    assert roles(labels) == {
        "F4-M1": D("EEG F3-A2"), "C4-M1": D("EEG C3-A2"), "O2-M1": D("EEG O1-A2"),
        "LOC": D("EOG L"), "ROC": D("EOG R"), "CHIN": D("Chin")}


@pytest.mark.parametrize("labels, role, expected", [
    # recorded F4-M1 beats everything else
    (["F3-M2", "F4-A1", "F4-M1"], "F4-M1", D("F4-M1")),
    # earlobe on the right side beats the left hemisphere
    (["F3-M2", "F4-A1"], "F4-M1", D("F4-A1")),
    # F4 and M1 recorded separately beat a recorded F3-M2
    (["F3-M2", "F4", "M1"], "F4-M1", D("F4", "M1")),
    (["C3-A1", "Cz-A1"], "C4-M1", D("Cz-A1")),
    (["C3-A1"], "C4-M1", D("C3-A1")),
    (["O1-M2", "Pz-Oz"], "O2-M1", D("O1-M2")),
    (["EOG1", "EOG2"], "LOC", D("EOG1")),
    (["EOG1", "EOG2"], "ROC", D("EOG2")),
    (["E1", "E2"], "LOC", D("E1")),              # no mastoid: the referential channel as is
    (["F4"], "F4-M1", D("F4")),
    (["EMG L", "EMG R"], "LOC", None),           # leg EMG is never an eye channel
    (["Leg L", "ECG", "Pleth"], "CHIN", None),
    (["Chin1", "Chin2"], "CHIN", D("Chin1", "Chin2")),
    (["Chin2", "Chin3"], "CHIN", D("Chin2", "Chin3")),
    (["EEG_F4_M1"], "F4-M1", D("EEG_F4_M1")),
    (["F4/A1"], "F4-M1", D("F4/A1")),
    (["EEG F4–M1", "EEG F4–M1"], "F4-M1", D("EEG F4–M1")),  # duplicates: the first (same label)
])
def test_preferences(labels, role, expected):
    assert roles(labels)[role] == expected


def test_no_labels_and_odd_labels_give_an_empty_montage():
    assert auto_montage([]).missing == list(ROLES)
    assert auto_montage(["", " ", "-", "EEG", "éé", "12345678901234567"]).missing == list(ROLES)


@pytest.mark.parametrize("label, key", [
    ("EEG F4-M1", "F4-M1"), ("eeg f4 - m1", "F4-M1"), ("F4:M1", "F4-M1"), ("F4–M1", "F4-M1"),
    ("EOG L", "EOGL"), ("EOG-L", "EOGL"), ("EMG chin", "CHIN"), ("EOG(L)", "EOGL"),
])
def test_normalise(label, key):
    assert key in normalise(label)


def test_montage_json_round_trip_and_unknown_labels():
    m = auto_montage(["F4", "M1", "EOG L", "Chin"])
    again = Montage.from_json(m.to_json())
    assert again.roles == m.roles
    assert unknown_labels(m, ["F4", "M1", "EOG L", "Chin"]) == []
    assert unknown_labels(m, ["F4", "EOG L"]) == ["Chin", "M1"]


def test_montage_summary_lines():
    lines = montage_summary(auto_montage(["F4", "M1", "EEG C4-M1"]))
    assert len(lines) == 7
    assert lines[0].startswith("F4-M1 (frontal EEG)") and lines[0].endswith("F4 - M1  (derived)")
    assert lines[1].endswith("EEG C4-M1")
    assert lines[2].endswith("missing")
    assert lines[6] == "Reduced montage: 4 of 6 roles missing (O2-M1, LOC, ROC, CHIN)"
    full = auto_montage(["F4-M1", "C4-M1", "O2-M1", "E1-M2", "E2-M1", "Chin1-Chin2"])
    assert len(montage_summary(full)) == 6


# ---------------------------------------------------------------------------------------------
# Reading a role


def test_read_role_subtracts_at_the_same_rate(tmp_path):
    fs = 256
    f4, m1 = sine(fs, 4, 2.0, 60.0), sine(fs, 4, 0.3, 20.0)
    path = write_psg_edf(tmp_path / "ref.edf", {"F4": f4, "M1": m1, "Chin": f4 / 3}, fs)
    with Recording.open(path) as rec:
        m = auto_montage([c.label for c in rec.channels])
        assert m.roles["F4-M1"] == D("F4", "M1")
        x, rate = read_role(rec, m.roles["F4-M1"], 1.0, 3.0)
        assert rate == fs and x.dtype == np.float32 and x.shape == (2 * fs,)
        np.testing.assert_allclose(x, (f4 - m1)[fs:3 * fs], atol=0.01)
        chin, rate = read_role(rec, m.roles["CHIN"], 0, 1)
        np.testing.assert_allclose(chin, f4[:fs] / 3, atol=0.01)
        with pytest.raises(RecordingError, match="no channel labelled 'A2'"):
            read_role(rec, D("F4", "A2"), 0, 1)


def test_read_role_resamples_the_negative_channel(tmp_path):
    # M1 at 100 Hz, F4 at 256 Hz: M1 is interpolated onto F4's sample times
    f4 = sine(256, 4, 1.0, 50.0)
    m1 = sine(100, 4, 0.25, 40.0)
    path = write_psg_edf(tmp_path / "rates.edf", {"F4": f4, "M1": m1}, {"F4": 256, "M1": 100})
    with Recording.open(path) as rec:
        for start, stop in ((0.0, 4.0), (1.3, 2.7), (3.0, 4.0)):
            x, rate = read_role(rec, D("F4", "M1"), start, stop)
            assert rate == 256 and x.dtype == np.float32
            i0, i1 = round(start * 256), round(stop * 256)
            t = np.arange(i0, i1) / 256
            want = f4[i0:i1] - 40.0 * np.sin(2 * np.pi * 0.25 * t)
            assert x.shape == want.shape
            # linear interpolation of a slow sine at 100 Hz: error far below a microvolt, except
            # after M1's last sample (3.99 s), where its last value is held
            inside = t <= 3.99
            np.testing.assert_allclose(x[inside], want[inside], atol=0.05)
            np.testing.assert_allclose(x[~inside], (f4[i0:i1] - m1[-1])[~inside], atol=0.05)
        # and the other way round: a slow positive channel minus a fast negative one
        y, rate = read_role(rec, D("M1", "F4"), 0, 1)
        assert rate == 100 and y.shape == (100,)
        assert np.isfinite(y).all()


def test_read_role_keeps_gaps_as_nan(tmp_path):
    onsets = [0, 1, 5]
    sig = {"C4": np.full(300, 30.0), "M1": np.full(150, 10.0)}
    path, _ = write_discontinuous_edf(tmp_path / "gap.edf", sig, {"C4": 100, "M1": 50}, onsets)
    with Recording.open(path) as rec:
        x, rate = read_role(rec, D("C4", "M1"), 0, 6)
    assert rate == 100 and x.shape == (600,)
    np.testing.assert_allclose(x[:190], 20.0, atol=0.05)
    assert np.isnan(x[210:500]).all()
    np.testing.assert_allclose(x[510:590], 20.0, atol=0.05)
