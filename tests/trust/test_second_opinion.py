"""The YASA second opinion on real recordings, and its table in the study file (schema v3)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from edf_factory import write_discontinuous_edf, write_psg_edf
from old_schema import schema_version

from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.signals.montage import Derivation, Montage, auto_montage
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.core.study import audit, audit_verify, study_schema
from sleepvlm_ws.core.study.study import Study
from sleepvlm_ws.core.synth import generate_night, write_night_edf
from sleepvlm_ws.core.trust import second_opinion
from sleepvlm_ws.core.trust.second_opinion import SecondOpinionUnavailable
from sleepvlm_ws.errors import InputError, StudyError

# 1.5 h with every stage, in a plausible order (the stager uses 2-7.5 min of context)
STAGES = ([Stage.W] * 12 + [Stage.N1] * 6 + [Stage.N2] * 36 + [Stage.N3] * 36 + [Stage.N2] * 20
          + [Stage.R] * 30 + [Stage.N2] * 24 + [Stage.W] * 16)


@pytest.fixture(scope="module")
def night():
    return generate_night(seed=11, fs=256.0, stages=STAGES)


@pytest.fixture(scope="module")
def night_edf(night, tmp_path_factory):
    return write_night_edf(night, tmp_path_factory.mktemp("so") / "night.edf")


@pytest.fixture(scope="module")
def result(night_edf):
    with Recording.open(night_edf) as rec:
        return second_opinion.compute(rec, auto_montage([c.label for c in rec.channels]))


def _study(tmp_path, rec_path, n_epochs, montage=None) -> Study:
    return Study.create(tmp_path / "s.sleepvlm", recording_path=rec_path, n_epochs=n_epochs,
                        montage=montage or Montage(), scorer="amy")


# ------------------------------------------------------------------------------ the stager
def test_it_stages_every_epoch_on_the_recordings_grid(result, night):
    assert result.n_epochs == len(STAGES)
    assert [o.epoch for o in result.opinions] == list(range(len(STAGES)))
    assert result.gap_epochs == []
    assert result.channels == {"eeg": "EEG C4-M1", "eog": "EOG E1-M2", "emg": "EMG Chin1-Chin2"}
    assert result.method.startswith("yasa-") and result.method.endswith("clf_eeg+eog+emg")
    for o in result.opinions:
        assert set(o.probabilities) == set(SLEEP_STAGES)
        assert sum(o.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert o.probabilities[o.stage] == pytest.approx(o.confidence)


def test_it_agrees_with_the_generators_stages_better_than_chance(result):
    truth = np.array([s.value for s in STAGES])
    said = np.array([o.stage.value for o in result.opinions])
    agreement = float(np.mean(truth == said))
    labels = [s.value for s in SLEEP_STAGES]
    chance = sum(np.mean(truth == s) * np.mean(said == s) for s in labels)
    kappa = (agreement - chance) / (1 - chance)
    assert agreement > chance + 0.3 and kappa > 0.6, (agreement, chance, kappa)
    # deep sleep and wake, the easiest stages, are mostly right
    for stage in ("N3", "W"):
        assert np.mean(said[truth == stage] == stage) > 0.6


def test_gaps_of_an_edf_plus_d_get_no_opinion(night, tmp_path):
    keep = [k for k in range(len(STAGES)) if not 60 <= k < 80]    # 10 minutes missing
    spe = int(30 * night.fs)
    labels = {"C4-M1": "EEG C4-M1", "LOC": "EOG E1-M2", "CHIN": "EMG Chin"}
    signals = {label: np.concatenate([night.signals[role][k * spe:(k + 1) * spe] for k in keep])
               for role, label in labels.items()}
    path, _ = write_discontinuous_edf(tmp_path / "gappy.edf", signals, night.fs,
                                      [30.0 * k for k in keep], record_duration=30.0)
    with Recording.open(path) as rec:
        assert rec.file_type == "EDF+D" and rec.n_epochs == len(STAGES)
        out = second_opinion.compute(rec, auto_montage([c.label for c in rec.channels]))
    assert out.gap_epochs == list(range(60, 80))
    assert [o.epoch for o in out.opinions] == keep
    assert all(np.isfinite(list(o.probabilities.values())).all() for o in out.opinions)


# ------------------------------------------------------------------------- unavailable
def _write(tmp_path, name, signals, fs, minutes=6):
    rng = np.random.default_rng(0)
    n = int(minutes * 60 * fs)
    return write_psg_edf(tmp_path / name, {label: rng.normal(0, 20, n) for label in signals}, fs)


def _compute(path):
    with Recording.open(path) as rec:
        return second_opinion.compute(rec, auto_montage([c.label for c in rec.channels]))


def test_only_an_eog_channel_gives_the_reason(tmp_path):
    path = _write(tmp_path, "eog_only.edf", ["EOG E1-M2"], 256.0)
    with pytest.raises(SecondOpinionUnavailable) as found:
        _compute(path)
    assert str(found.value) == ("second opinion unavailable: no central EEG channel ≥ 80 Hz "
                                "in eog_only.edf")
    assert isinstance(found.value, InputError)


def test_a_50_hz_eeg_gives_the_reason(tmp_path):
    path = _write(tmp_path, "slow.edf", ["C4-M1", "E1-M2", "Chin1-Chin2"], 50.0)
    with pytest.raises(SecondOpinionUnavailable, match="no central EEG channel ≥ 80 Hz in slow.edf"):
        _compute(path)


def test_a_recording_shorter_than_5_minutes_gives_the_reason(tmp_path):
    path = _write(tmp_path, "short.edf", ["C4-M1"], 256.0, minutes=3)
    with pytest.raises(SecondOpinionUnavailable, match="shorter than 5 minutes in short.edf"):
        _compute(path)


def test_an_eeg_only_recording_at_200_hz_runs_without_eog_and_emg(tmp_path, night):
    from scipy.signal import resample_poly

    x = resample_poly(night.signals["C4-M1"][: int(20 * 30 * night.fs)], 25, 32)  # 256 -> 200 Hz
    path = write_psg_edf(tmp_path / "eeg.edf", {"C3-M2": x}, 200.0)
    out = _compute(path)
    assert out.channels == {"eeg": "C3-M2"} and out.method.endswith("clf_eeg")
    assert len(out.opinions) == 20


# -------------------------------------------------------------------- the study file
def test_stored_probabilities_sum_to_one_and_the_run_is_audited(tmp_path, result, night_edf):
    with _study(tmp_path, night_edf, len(STAGES)) as s:
        assert second_opinion.load(s) == {}
        assert second_opinion.store(s, result, "amy") == len(STAGES)
        assert second_opinion.store(s, result, "amy") == 0          # stored already
        stored = second_opinion.load(s)
        assert second_opinion.methods(s) == [result.method]
        assert sorted(stored) == list(range(len(STAGES)))
        for o in result.opinions:
            back = stored[o.epoch]
            assert back.stage is o.stage
            assert sum(back.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        runs = [e for e in s.audit_events() if e.kind == second_opinion.SECOND_OPINION_RUN]
        assert [e.payload["epochs_stored"] for e in runs] == [len(STAGES), 0]
        assert runs[0].payload["channels"]["eeg"] == "EEG C4-M1"
        assert s.verify().ok
    conn = sqlite3.connect(tmp_path / "s.sleepvlm")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE second_opinions SET stage = 'W'")
        with pytest.raises(sqlite3.IntegrityError):   # probabilities are checked
            conn.execute("INSERT INTO second_opinions VALUES (0, 'x', 'W', 2, 0, 0, 0, 0, '{}', '')")
    finally:
        conn.close()
    assert audit_verify.verify(tmp_path / "s.sleepvlm").ok


def test_a_result_for_another_recording_is_refused(tmp_path, result, night_edf):
    with _study(tmp_path, night_edf, len(STAGES) - 1) as s:
        with pytest.raises(ValueError, match="covers"):
            second_opinion.store(s, result, "amy")


# ------------------------------------------------------------------- migration v2 -> v3
def _write_v2_study(path, monkeypatch) -> None:
    with schema_version(monkeypatch, 2):
        montage = Montage()
        montage.roles["C4-M1"] = Derivation("C4", "M1")
        s = Study.create(path, recording_path="night.edf", n_epochs=12, montage=montage,
                         scorer="amy")
        s.score(3, Stage.N2, scorer="amy")
        s.close()


def _tables(path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def test_a_version_2_study_gains_the_second_opinions_table(tmp_path, monkeypatch):
    path = tmp_path / "v2.sleepvlm"
    _write_v2_study(path, monkeypatch)
    assert "second_opinions" not in _tables(path) and "suggestions" in _tables(path)
    assert audit_verify.verify(path).ok
    with Study.open(path) as s:
        assert s.meta["schema_version"] == study_schema.SCHEMA_VERSION
        assert s.stage(3) is Stage.N2
        migrated = [e.payload for e in s.audit_events() if e.kind == audit.SCHEMA_MIGRATED]
        assert migrated == [{"from": v, "to": v + 1}
                            for v in range(2, study_schema.SCHEMA_VERSION)]
        assert second_opinion.load(s) == {}
        assert s.verify().ok
    assert "second_opinions" in _tables(path)
    fresh = tmp_path / "new.sleepvlm"
    Study.create(fresh, recording_path="night.edf", n_epochs=12, montage=Montage(),
                 scorer="amy").close()

    def schema(p):
        conn = sqlite3.connect(p)
        try:
            return sorted(r[0] for r in conn.execute(
                "SELECT sql FROM sqlite_master WHERE name LIKE 'second_opinions%'"))
        finally:
            conn.close()
    assert schema(path) == schema(fresh) != []


def test_a_failed_migration_to_version_3_leaves_the_study_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "v2.sleepvlm"
    _write_v2_study(path, monkeypatch)

    def broken(conn):
        study_schema._add_second_opinions(conn)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(study_schema.MIGRATIONS, 2, broken)
    with pytest.raises(StudyError, match="disk I/O error"):
        Study.open(path)
    assert "second_opinions" not in _tables(path)
    assert audit_verify.verify(path).ok
    monkeypatch.undo()
    with Study.open(path) as s:
        assert s.meta["schema_version"] == study_schema.SCHEMA_VERSION and s.verify().ok
