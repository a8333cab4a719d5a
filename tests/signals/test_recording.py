"""Recording: real EDF/BDF files written in tmp_path, read back through every reader."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta

import numpy as np
import pytest
from edf_factory import (RawSignal, patch_header, quantum, sine, write_discontinuous_edf, write_psg_edf,
                         write_raw_edf)

from sleepvlm_ws.core.signals.recording import Annotation, Recording
from sleepvlm_ws.errors import RecordingError


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def opened(path) -> Recording:
    """Open, and check that opening and reading every channel leaves the file untouched."""
    before = sha(path)
    rec = Recording.open(path)
    for ch in rec.channels:
        rec.read(ch.index, 0, min(rec.duration_s, 5))
    assert sha(path) == before
    return rec


def assert_values(got: np.ndarray, want: np.ndarray, step: float) -> None:
    assert got.dtype == np.float32
    assert got.shape == want.shape
    # EDF quantisation (one step: edflib truncates when it writes) plus float32 rounding
    tol = step + 1e-6 * max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def step_of(signal: np.ndarray, bdf: bool = False) -> float:
    from edf_factory import physical_range
    return quantum(*physical_range(signal), bdf=bdf)


# ---------------------------------------------------------------------------------------------
# Good files


def test_rates_per_channel_exact_values_float32(tmp_path):
    seconds = 6
    fs = {"EEG F4-M1": 100, "EEG C4-M1": 200, "EOG E1-M2": 256, "EMG Chin": 512}
    signals = {lab: sine(r, seconds, freq=1.5 + i, amplitude=40 + 10 * i)
               for i, (lab, r) in enumerate(fs.items())}
    path = write_psg_edf(tmp_path / "rates.edf", signals, fs)
    with opened(path) as rec:
        assert rec.backend == "pyedflib"
        assert rec.file_type == "EDF+C"
        assert rec.duration_s == seconds
        assert [c.label for c in rec.channels] == list(fs)
        assert [c.fs for c in rec.channels] == list(fs.values())
        assert rec.start == datetime(2024, 3, 1, 22, 30)
        for ch in rec.channels:
            want = signals[ch.label]
            assert_values(rec.read(ch.label, 0, seconds), want, step_of(want))
            # a window in the middle, by index
            r = int(ch.fs)
            assert_values(rec.read(ch.index, 2.0, 3.5), want[2 * r: int(3.5 * r)], step_of(want))


@pytest.mark.parametrize("unit, factor", [
    ("uV", 1.0), ("mV", 1e3), ("V", 1e6), ("nV", 1e-3), ("µV", 1.0), ("microV", 1.0),
    ("uv", 1.0), ("%", 1.0), ("bpm", 1.0), ("", 1.0),
])
def test_units_come_back_in_microvolts(tmp_path, unit, factor):
    fs, seconds = 100, 3
    uv = sine(fs, seconds, freq=2.0, amplitude=80.0)          # what the reader must return
    stored = uv / factor                                     # what the file holds, in `unit`
    ranges = {"X": (-100 / factor, 100 / factor)}
    ascii_unit = unit if unit.isascii() else "uV"            # pyedflib writes ASCII only
    path = write_psg_edf(tmp_path / "unit.edf", {"X": stored}, fs, units=ascii_unit, ranges=ranges)
    patch_header(path, "unit", unit.encode("utf-8"), signal=0)
    with opened(path) as rec:
        ch = rec.channel("X")
        assert ch.unit == unit and ch.to_uv == factor
        assert_values(rec.read("X", 0, seconds), uv, quantum(-100, 100))


@pytest.mark.parametrize("file_type, expected", [
    ("BDF+", "BDF+C"), ("BDF", "BDF"), ("EDF", "EDF"), ("EDF+", "EDF+C")])
def test_file_types(tmp_path, file_type, expected):
    fs, seconds = 256, 4
    signals = {"C4-M1": sine(fs, seconds, 3.0, 120.0), "O2-M1": sine(fs, seconds, 10.0, 20.0)}
    suffix = ".bdf" if file_type.startswith("BDF") else ".edf"
    path = write_psg_edf(tmp_path / f"f{suffix}", signals, fs, file_type=file_type)
    with opened(path) as rec:
        assert rec.file_type == expected
        assert rec.backend == "pyedflib"
        for label, want in signals.items():
            assert_values(rec.read(label, 0, seconds), want,
                          step_of(want, bdf=file_type.startswith("BDF")))
        assert rec.annotations == []


def test_bdf_keeps_24_bit_resolution(tmp_path):
    fs = 128
    want = sine(fs, 2, 1.0, 0.5)  # half a microvolt: invisible at 16 bits over a wide range
    ranges = {"EEG": (-5000.0, 5000.0)}
    path = write_psg_edf(tmp_path / "fine.bdf", {"EEG": want}, fs, file_type="BDF+", ranges=ranges)
    with opened(path) as rec:
        got = rec.read("EEG", 0, 2)
    assert quantum(-5000, 5000, bdf=True) < 0.001
    assert_values(got, want, quantum(-5000, 5000, bdf=True))


def test_annotations_with_onset_duration_and_text(tmp_path):
    notes = [(30.0, 30.0, "Sleep stage W"), (0.0, 30.0, "Sleep stage 1"), (45.5, 0.0, "Lights on"),
             (60.0, 30.0, "Schlafstadium Wach äö")]
    path = write_psg_edf(tmp_path / "notes.edf", {"EEG": sine(100, 90)}, 100, annotations=notes)
    with opened(path) as rec:
        got = rec.annotations
        assert rec.info_dict()["n_annotations"] == 4
    assert got == sorted((Annotation(o, d, t) for o, d, t in notes), key=lambda a: a.onset_s)


def test_epochs_and_info_dict(tmp_path):
    path = write_psg_edf(tmp_path / "night.edf", {"EEG F4-M1": sine(100, 95), "SpO2": np.full(95, 97.0)},
                         {"EEG F4-M1": 100, "SpO2": 1}, units={"EEG F4-M1": "uV", "SpO2": "%"})
    with opened(path) as rec:
        assert rec.n_epochs == 3
        info = rec.info_dict()
    json.dumps(info)
    assert info == {
        "path": str(path.absolute()), "file_type": "EDF+C", "backend": "pyedflib",
        "start": "2024-03-01T22:30:00", "duration_s": 95.0, "n_epochs": 3,
        "channels": [{"label": "EEG F4-M1", "fs": 100.0, "unit": "uV"},
                     {"label": "SpO2", "fs": 1.0, "unit": "%"}],
        "n_annotations": 0,
    }


def test_fingerprint_identifies_the_file(tmp_path):
    a = write_psg_edf(tmp_path / "a.edf", {"EEG": sine(100, 4)}, 100)
    b = write_psg_edf(tmp_path / "b.edf", {"EEG": sine(100, 4)}, 100,
                      start=datetime(2024, 3, 2, 22, 30))
    with Recording.open(a) as ra, Recording.open(a) as ra2, Recording.open(b) as rb:
        assert ra.fingerprint() == ra2.fingerprint()
        assert len(ra.fingerprint()) == 64
        assert ra.fingerprint() != rb.fingerprint()


def test_window_edges_are_nan_and_sample_grid(tmp_path):
    fs = 100
    want = sine(fs, 4, 1.0, 60.0)
    path = write_psg_edf(tmp_path / "edges.edf", {"EEG": want}, fs)
    step = step_of(want)
    with opened(path) as rec:
        before = rec.read("EEG", -0.5, 0.5)
        assert before.shape == (100,)
        assert np.isnan(before[:50]).all()
        assert_values(before[50:], want[:50], step)
        after = rec.read("EEG", 3.5, 4.5)
        assert_values(after[:50], want[350:], step)
        assert np.isnan(after[50:]).all()
        assert np.isnan(rec.read("EEG", 10, 11)).all()
        assert rec.read("EEG", 2, 2).size == 0
        assert rec.read("EEG", 3, 2).size == 0
        with pytest.raises(RecordingError, match="no channel labelled 'Fz'"):
            rec.read("Fz", 0, 1)
        with pytest.raises(RecordingError, match="no channel number 3"):
            rec.read(3, 0, 1)
        assert rec.channel("eeg") == rec.channel("EEG")  # case-insensitive fallback
    with pytest.raises(RecordingError, match="closed"):
        rec.read("EEG", 0, 1)
    rec.close()  # twice is fine


# ---------------------------------------------------------------------------------------------
# EDF+D


@pytest.mark.parametrize("bdf", [False, True])
def test_discontinuous_records_land_at_their_onsets(tmp_path, bdf):
    onsets = [0, 1, 2, 10, 11]                     # a gap from 3 s to 10 s
    fs = {"EEG C4-M1": 100, "EMG Chin": 200}
    signals = {"EEG C4-M1": sine(100, 5, 1.0, 50.0), "EMG Chin": sine(200, 5, 7.0, 20.0)}
    path, written = write_discontinuous_edf(
        tmp_path / ("gap.bdf" if bdf else "gap.edf"), signals, fs, onsets,
        annotations=[(10.5, 1.0, "Arousal")], bdf=bdf)
    with opened(path) as rec:
        assert rec.file_type == ("BDF+D" if bdf else "EDF+D")
        assert rec.backend == "numpy"
        assert rec.duration_s == 12.0
        assert rec.annotations == [Annotation(10.5, 1.0, "Arousal")]
        for label, r in fs.items():
            want = written[label]
            step = quantum(-60, 60, bdf)  # generous: ranges are within +-60
            got = rec.read(label, 0, 12)
            assert got.dtype == np.float32 and got.shape == (12 * r,)
            np.testing.assert_allclose(got[:3 * r], want[:3 * r], atol=step)
            assert np.isnan(got[3 * r:10 * r]).all()
            np.testing.assert_allclose(got[10 * r:], want[3 * r:], atol=step)
            # a window across the gap's far edge
            part = rec.read(label, 9.5, 10.5)
            assert np.isnan(part[: r // 2]).all()
            np.testing.assert_allclose(part[r // 2:], want[3 * r: 3 * r + r // 2], atol=step)


def test_discontinuous_sub_second_start_and_unsorted_records(tmp_path):
    # first record stamped +0.5 s: the timeline starts there; records stored out of time order
    onsets = [0.5, 4.5, 1.5]
    want = np.concatenate([np.full(50, 10.0), np.full(50, 30.0), np.full(50, 20.0)])
    path, written = write_discontinuous_edf(tmp_path / "late.edf", {"EEG": want}, 50, onsets)
    with opened(path) as rec:
        assert rec.start == datetime(2024, 3, 1, 22, 30) + timedelta(seconds=0.5)
        assert rec.duration_s == 5.0
        got = rec.read("EEG", 0, 5)
    step = 0.01
    np.testing.assert_allclose(got[0:50], 10.0, atol=step)
    np.testing.assert_allclose(got[50:100], 20.0, atol=step)
    assert np.isnan(got[100:200]).all()
    np.testing.assert_allclose(got[200:250], 30.0, atol=step)


# ---------------------------------------------------------------------------------------------
# Files the strict library refuses


def _refused_by_pyedflib(path) -> None:
    import pyedflib
    with pytest.raises(OSError):
        pyedflib.EdfReader(str(path)).close()


def test_latin1_micro_unit_falls_back_to_mne(tmp_path):
    want = sine(100, 4, 2.0, 70.0)
    path = write_psg_edf(tmp_path / "micro.edf", {"EEG C3-A2": want, "Chin": want / 2}, 100)
    patch_header(path, "unit", b"\xb5V", signal=0)           # "µV" as Latin-1: not ASCII
    patch_header(path, "unit", "mV", signal=1)               # values now read as millivolts
    _refused_by_pyedflib(path)
    with opened(path) as rec:
        assert rec.backend == "mne"
        assert [c.unit for c in rec.channels] == ["µV", "mV"]
        assert_values(rec.read(0, 0, 4), want, step_of(want))
        assert_values(rec.read(1, 0, 4), want / 2 * 1000, step_of(want / 2) * 1000)


def test_bad_start_date_falls_back_to_mne_and_keeps_the_date(tmp_path):
    want = sine(200, 3, 5.0, 30.0) * 1e-6  # volts
    path = write_psg_edf(tmp_path / "date.edf", {"F4-M1": want}, 200, units="V",
                         ranges={"F4-M1": (-0.0005, 0.0005)})
    patch_header(path, "start_date", "1.3.24")
    _refused_by_pyedflib(path)
    with opened(path) as rec:
        assert rec.backend == "mne"
        assert rec.start == datetime(2024, 3, 1, 22, 30)
        assert_values(rec.read(0, 0, 3), want * 1e6, quantum(-500, 500))


def test_refused_file_with_mixed_rates_or_odd_name_read_by_numpy(tmp_path):
    a, b = sine(256, 4, 1.0, 50.0), sine(64, 4, 0.5, 200.0)
    for name in ("mixed.edf", "same.rec"):
        rates = {"A": 256, "B": 64} if name == "mixed.edf" else 256
        sig = {"A": a, "B": b if name == "mixed.edf" else a * 2}
        path = write_psg_edf(tmp_path / name, sig, rates, units={"A": "uV", "B": "mV"})
        patch_header(path, "start_time", "22:30:00")  # pyedflib wants dots
        _refused_by_pyedflib(path)
        with opened(path) as rec:
            assert rec.backend == "numpy"
            assert rec.start == datetime(2024, 3, 1, 22, 30)
            assert_values(rec.read("A", 0, 4), a, step_of(a))
            want_b = sig["B"] * 1000
            assert_values(rec.read("B", 1, 3), want_b[int(rec.channel("B").fs):
                                                       3 * int(rec.channel("B").fs)],
                          step_of(sig["B"]) * 1000)


def test_non_ascii_and_duplicate_labels(tmp_path):
    x, y, z = sine(100, 2, 1.0, 10.0), sine(100, 2, 2.0, 20.0), sine(100, 2, 3.0, 30.0)
    path = write_psg_edf(tmp_path / "labels.edf", {"A": x, "B": y, "C": z}, 100)
    patch_header(path, "label", "EEG F4–M1".encode("utf-8"), signal=0)   # en dash, UTF-8
    patch_header(path, "label", "Kinn-EMG é".encode("latin-1"), signal=1)  # Latin-1
    patch_header(path, "label", "EEG F4–M1".encode("utf-8"), signal=2)   # duplicate label
    _refused_by_pyedflib(path)
    with opened(path) as rec:
        assert rec.backend == "mne"
        assert [c.label for c in rec.channels] == ["EEG F4–M1", "Kinn-EMG é", "EEG F4–M1"]
        assert rec.channel("EEG F4–M1").index == 0
        assert_values(rec.read("EEG F4–M1", 0, 2), x, step_of(x))
        assert_values(rec.read("Kinn-EMG é", 0, 2), y, step_of(y))
        assert_values(rec.read(2, 0, 2), z, step_of(z))


def test_record_count_minus_one_is_counted_from_the_file(tmp_path):
    want = sine(100, 5)
    path = write_psg_edf(tmp_path / "live.edf", {"EEG": want}, 100)
    patch_header(path, "n_records", "-1")
    with opened(path) as rec:
        assert rec.duration_s == 5
        assert_values(rec.read("EEG", 0, 5), want, step_of(want))


def test_bytes_after_the_last_record_are_ignored(tmp_path):
    want = sine(100, 3, 1.0, 40.0)
    path = write_psg_edf(tmp_path / "tail.edf", {"EEG": want}, 100)
    with open(path, "ab") as f:
        f.write(b"\x7f" * 333)   # e.g. a half-written record when the recorder stopped
    with opened(path) as rec:
        assert rec.backend == "pyedflib" and rec.duration_s == 3
        assert_values(rec.read("EEG", 0, 4)[:300], want, step_of(want))
        assert np.isnan(rec.read("EEG", 0, 4)[300:]).all()


def test_plain_edf_reserved_field_still_skips_the_annotation_signal(tmp_path):
    # An EDF+ file whose reserved field was blanked: plain EDF to pyedflib, which then lists
    # "EDF Annotations" as a signal; it is still not a channel and its notes are still read.
    want = sine(100, 3, 1.0, 40.0)
    path = write_psg_edf(tmp_path / "plain.edf", {"EEG": want, "EOG": -want}, 100,
                         annotations=[(1.0, 0.0, "Lights off")])
    patch_header(path, "reserved", "")
    with opened(path) as rec:
        assert rec.file_type == "EDF" and rec.backend == "pyedflib"
        assert [c.label for c in rec.channels] == ["EEG", "EOG"]
        assert_values(rec.read("EOG", 0, 3), -want, step_of(want))
        assert rec.annotations == [Annotation(1.0, 0.0, "Lights off")]


def test_byte_written_edf_with_swapped_digital_range(tmp_path):
    # dig_min > dig_max (inverted polarity) is outside the spec but well defined
    digital = np.arange(-50, 50, dtype=np.int64).reshape(1, 100)
    sig = RawSignal("Inv", digital, "uV", -100.0, 100.0, 32767, -32768)
    path = write_raw_edf(tmp_path / "inv.edf", [sig])
    with opened(path) as rec:
        np.testing.assert_allclose(rec.read("Inv", 0, 1), sig.physical(), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Bad files: one line naming the file, never a traceback, never a write


def _good(tmp_path, name="bad.edf"):
    return write_psg_edf(tmp_path / name, {"EEG": sine(100, 4), "EOG": sine(100, 4)}, 100)


def _truncate(path, keep):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:keep])


BAD = {
    "empty": (lambda p: open(p, "wb").close(), "empty"),
    "random bytes": (lambda p: open(p, "wb").write(np.random.default_rng(1).bytes(5000)),
                     "not an EDF or BDF"),
    "short header": (lambda p: _truncate(p, 100), "too short"),
    "truncated header": (lambda p: _truncate(p, 300), "truncated header"),
    "truncated data": (lambda p: _truncate(p, os.path.getsize(p) - 700), "truncated"),
    "more records claimed": (lambda p: patch_header(p, "n_records", "40"),
                             "promises 40 data records but the file holds only 4"),
    "zero records": (lambda p: patch_header(p, "n_records", "0"), "no data records"),
    "non-numeric records": (lambda p: patch_header(p, "n_records", "abc"),
                            "header: number of data records is not a number: 'abc'"),
    "non-numeric signals": (lambda p: patch_header(p, "ns", "x1"), "header: number of signals is not a number"),
    "non-numeric physical": (lambda p: patch_header(p, "phys_min", "low", signal=1),
                             "physical minimum of signal 'EOG' is not a number"),
    "non-numeric spr": (lambda p: patch_header(p, "spr", "1OO", signal=0), "samples per record"),
    "physical min == max": (lambda p: (patch_header(p, "phys_min", "100", signal=0),
                                       patch_header(p, "phys_max", "100", signal=0)),
                            "physical minimum equals physical maximum"),
    "digital min == max": (lambda p: (patch_header(p, "dig_min", "7", signal=1),
                                      patch_header(p, "dig_max", "7", signal=1)),
                           "digital minimum equals digital maximum"),
    "header size": (lambda p: patch_header(p, "header_bytes", "999"), "header size"),
    "record duration": (lambda p: patch_header(p, "record_duration", "0"), "must be positive"),
    "zero samples": (lambda p: patch_header(p, "spr", "0", signal=1), "samples per data record"),
    "too many signals": (lambda p: patch_header(p, "ns", "9999"), "impossible number of signals"),
    "version": (lambda p: patch_header(p, "version", "1"), "version"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_give_one_line_naming_the_file(tmp_path, case):
    spoil, problem = BAD[case]
    path = _good(tmp_path)
    spoil(path)
    before = sha(path)
    with pytest.raises(RecordingError) as info:
        Recording.open(path)
    message = str(info.value)
    assert "bad.edf" in message and "\n" not in message
    assert problem in message
    assert sha(path) == before


def test_missing_file_folder_and_annotation_only_file(tmp_path):
    with pytest.raises(RecordingError, match=r"nothere\.edf: file not found"):
        Recording.open(tmp_path / "nothere.edf")
    (tmp_path / "folder.edf").mkdir()
    with pytest.raises(RecordingError, match=r"folder\.edf: is a folder"):
        Recording.open(tmp_path / "folder.edf")
    hyp = write_raw_edf(tmp_path / "hyp.edf", [], record_onsets=[0.0],
                        annotations=[(0, 30, "Sleep stage W")], record_duration=0)
    with pytest.raises(RecordingError, match=r"hyp\.edf: holds annotations only"):
        Recording.open(hyp)


def test_edf_plus_d_without_annotation_signal_is_refused(tmp_path):
    path = _good(tmp_path, "d.edf")
    patch_header(path, "reserved", "EDF+D")
    # the pyedflib-written file has its annotation signal last: rename it to a plain signal
    patch_header(path, "label", "Notes", signal=2)
    with pytest.raises(RecordingError, match="EDF\\+D file without an 'EDF Annotations'"):
        Recording.open(path)


def _open_modes(path) -> list[int]:
    """Access modes of this process's open descriptors on ``path`` (Linux /proc)."""
    modes = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.path.realpath(f"/proc/self/fd/{fd}") != os.path.realpath(path):
                continue
            flags = next(line for line in open(f"/proc/self/fdinfo/{fd}") if line.startswith("flags"))
        except OSError:
            continue
        modes.append(int(flags.split()[1], 8) & os.O_ACCMODE)
    return modes


@pytest.mark.skipif(not os.path.isdir("/proc/self/fdinfo"), reason="needs Linux /proc")
@pytest.mark.parametrize("kind", ["pyedflib", "numpy"])
def test_the_file_is_held_open_read_only(tmp_path, kind):
    path = write_psg_edf(tmp_path / "ro.edf", {"EEG": sine(100, 3)}, 100)
    if kind == "numpy":
        path = write_discontinuous_edf(tmp_path / "ro.edf", {"EEG": sine(100, 3)}, 100, [0, 1, 5])[0]
    with Recording.open(path) as rec:
        assert rec.backend == kind
        rec.read(0, 0, 3)
        modes = _open_modes(path)
        assert modes and all(m == os.O_RDONLY for m in modes)
    assert _open_modes(path) == []  # closed
