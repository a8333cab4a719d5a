"""DREAMS excerpts (core/signals/dreams.py): the loader on hand-written files, the temporary EDF+ the rest
of the workstation reads, ``evaluate`` on them (CLI and core), and the real dev excerpts in
../shared/data/dreams-dev when they are there (read-only, evaluation only: nothing converted
from them is written anywhere but a temporary folder).

No figures are asserted on the real data (they belong in benchmarks/bench_real_transfer.py);
the real evaluation checks the machinery only.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.pipeline.evaluate import find_scored_studies, read_reference
from sleepvlm_ws.core.signals import dreams
from sleepvlm_ws.core.signals.montage import auto_montage
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.errors import HypnogramFormatError, InputError, RecordingError

REPO = Path(__file__).resolve().parents[2]
DEV = REPO.parent / "shared" / "data" / "dreams-dev"
needs_dev = pytest.mark.skipif(not (DEV / "excerpt1.txt").is_file(),
                               reason=f"the DREAMS dev excerpts are not at {DEV}")
W, N1, N2, N3, R, U = Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R, Stage.UNSCORED


def write_signal(path: Path, channel: str, samples) -> Path:
    path.write_text(f"[{channel}]\n" + "".join(f"{v:10.4f}\n" for v in samples), encoding="ascii")
    return path


def write_hypnogram(path: Path, labels) -> Path:
    path.write_text("[Hypnogram]\n" + "".join(f"{v}\n" for v in labels), encoding="ascii")
    return path


def one_line(exc: pytest.ExceptionInfo, name: str, *words: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and name in text, text
    for word in words:
        assert word in text, (word, text)
    return text


def sine(fs: float, seconds: float, uv: float = 40.0, hz: float = 2.0) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    return uv * np.sin(2 * np.pi * hz * t) + 5.0 * np.cos(2 * np.pi * 11.0 * t)


# ------------------------------------------------------------------------------ loader
def test_rate_comes_from_the_table_else_the_argument_else_a_one_line_error(tmp_path):
    listed = write_signal(tmp_path / "excerpt3.txt", "C3-A1", [1.0, 2.0, 3.0])
    sig = dreams.read_signal(listed)
    assert (sig.channel, sig.rate, sig.samples.tolist()) == ("C3-A1", 50.0, [1.0, 2.0, 3.0])
    assert dreams.read_signal(tmp_path / "excerpt3.txt", rate=50).rate == 50.0  # agrees: fine
    assert dreams.KNOWN_RATES == {"excerpt1.txt": 100.0, "excerpt2.txt": 200.0,
                                  "excerpt3.txt": 50.0, "excerpt4.txt": 200.0}
    other = write_signal(tmp_path / "night-cz.txt", "CZ-A1", [0.5, -0.5])
    assert dreams.read_signal(other, rate=256).rate == 256.0
    with pytest.raises(RecordingError) as exc:
        dreams.read_signal(other)
    one_line(exc, "night-cz.txt", "--rate")
    with pytest.raises(RecordingError) as exc:  # the table and the argument disagree
        dreams.read_signal(listed, rate=200)
    one_line(exc, "excerpt3.txt", "50 Hz", "200 Hz")
    for bad in (0, -100, 99.5, float("nan")):
        with pytest.raises(RecordingError) as exc:
            dreams.read_signal(other, rate=bad)
        one_line(exc, "night-cz.txt", "whole number")


def test_hypnogram_epochs_take_the_majority_of_six_labels(tmp_path):
    epochs = [
        ([5] * 6, W), ([4] * 6, R), ([3] * 6, N1), ([2] * 6, N2),
        ([1, 1, 1, 0, 0, 0], N3),          # S3 + S4 together are N3 (3 + 3 is no tie)
        ([1, 0, 2, 2, 0, 0], N3),          # S3 + S4 (4) outnumber S2 (2)
        ([2, 2, 2, 2, 3, 3], N2),          # a 20-s run of S2 against 10 s of S1
        ([-2, -2, -2, -2, 2, 2], U),       # mostly movement: unscored
        ([-1, -3, -1, 5, 5, 5], U),        # unscored/movement 3, wake 3: a tie
        ([2, 2, 2, 3, 3, 3], U),           # a tie between two stages
        ([5, 5, 3, 3, 2, 2], U),           # a three-way tie
        ([5, 5, 5, 5, 4, -1], W),
    ]
    labels = [v for lab, _ in epochs for v in lab] + [2, 2, 2]   # a partial epoch at the end
    path = write_hypnogram(tmp_path / "Hypnogram_excerpt9.txt", labels)
    assert dreams.read_hypnogram(path) == [stage for _, stage in epochs]
    assert dreams.epoch_stage([1, 1, 0, 0, 0, 0]) is N3 and dreams.epoch_stage([]) is U
    # evaluate's reader recognises it by its header even under another name, and pads or cuts
    renamed = write_hypnogram(tmp_path / "scoring.txt", [5] * 12)
    assert read_reference(renamed, 3) == [W, W, U]
    assert read_reference(path, 2) == [W, R]


@pytest.mark.parametrize("name, content, words", [
    ("excerpt1.txt", None, ["no such file"]),
    ("excerpt1.txt", "", ["empty"]),
    ("excerpt1.txt", "\n\n", ["empty"]),
    ("excerpt1.txt", "C3-A1\n1.0\n", ["first line", "[C3-A1]"]),
    ("excerpt1.txt", "[Hypnogram]\n5\n", ["hypnogram, not a signal"]),
    ("excerpt1.txt", "[C3-A1]\n", ["no samples"]),
    ("excerpt1.txt", "[C3-A1]\n1.0\nabc\n3.0\n", ["line 3", "'abc'", "not a sample"]),
    ("excerpt1.txt", "[C3-A1]\n1.0\n\n3.0\n", ["line 3", "empty line"]),
    ("excerpt1.txt", "[C3-A1]\n1.0\nnan\n", ["line 3", "'nan'"]),
    ("excerpt1.txt", "[C3-A1]\n1.0\n1e999\n", ["line 3"]),
    ("strange.txt", "[C3-A1]\n1.0\n", ["sampling rate unknown", "--rate"]),
    ("excerpt1.txt", b"[C3-A1]\n\xff\xfe\n", ["not plain ASCII"]),
])
def test_bad_signal_files_are_one_line_errors_naming_the_file(tmp_path, name, content, words):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="ascii")
    with pytest.raises(RecordingError) as exc:
        dreams.read_signal(path)
    assert isinstance(exc.value, InputError)
    one_line(exc, name, *words)


@pytest.mark.parametrize("content, words", [
    (None, ["no such file"]),
    ("", ["empty"]),
    ("[C3-A1]\n5\n", ["first line must be [Hypnogram]", "'[C3-A1]'"]),
    ("[Hypnogram]\n5\n5\n7\n", ["line 4", "'7'", "not an R&K label"]),
    ("[Hypnogram]\n5\nW\n", ["line 3", "'W'"]),
    ("[Hypnogram]\n5\n2.5\n", ["line 3", "'2.5'"]),
    ("[Hypnogram]\n5\n5\n5\n", ["3 labels", "not one whole 30-s epoch"]),
])
def test_bad_hypnograms_are_one_line_errors_naming_the_file(tmp_path, content, words):
    path = tmp_path / "Hypnogram_excerpt1.txt"
    if content is not None:
        path.write_text(content, encoding="ascii")
    with pytest.raises(HypnogramFormatError) as exc:
        dreams.read_hypnogram(path)
    one_line(exc, path.name, *words)
    with pytest.raises(InputError) as exc:  # evaluate reads it by name, with the same error
        read_reference(path, 10)
    one_line(exc, path.name, *words)


# ------------------------------------------------------------------------------ EDF+
@pytest.mark.parametrize("channel, rate, uv", [("C3-A1", 100, 150.0), ("CZ-A1", 200, 320.0),
                                               ("C3-A1", 50, 90.0)])
def test_the_temporary_edf_reads_back_within_0_1_uv_as_a_central_eeg(tmp_path, channel, rate, uv):
    x = sine(rate, 95.5, uv)   # 95.5 s: three whole epochs, and a partial second left out
    src = write_signal(tmp_path / "recording.txt", channel, x)
    before = src.read_bytes()
    with dreams.temporary_edf(src, rate=rate) as edf:
        folder = edf.parent
        assert edf.name == "recording.edf" and not folder.is_relative_to(REPO)
        with Recording.open(edf) as rec:
            assert [c.label for c in rec.channels] == [f"EEG {channel}"]
            assert rec.channels[0].fs == rate and rec.channels[0].unit.lower() in ("uv", "µv")
            assert rec.duration_s == 95.0 and rec.n_epochs == 3
            back = rec.read(0, 0.0, 95.0)
            assert np.abs(back - np.round(x[: 95 * rate], 4)).max() <= 0.05 + 1e-6
            montage = auto_montage([c.label for c in rec.channels])
            assert montage.roles["C4-M1"].name == f"EEG {channel}"
            assert set(montage.missing) == {"F4-M1", "O2-M1", "LOC", "ROC", "CHIN"}
            fingerprint = rec.fingerprint()
    assert not folder.exists()   # the conversion is gone with its folder
    assert src.read_bytes() == before
    with dreams.temporary_edf(src, rate=rate) as edf, Recording.open(edf) as rec:
        assert rec.fingerprint() == fingerprint  # same source, same study (a rerun resumes)


def test_a_signal_beyond_the_16_bit_range_is_written_24_bit_at_the_same_resolution(tmp_path):
    x = sine(100, 30, 40.0)
    x[500] = 5000.0   # a saturating artefact
    src = write_signal(tmp_path / "excerpt1.txt", "C3-A1", x)
    with dreams.temporary_edf(src) as edf, Recording.open(edf) as rec:
        assert rec.file_type.startswith("BDF")
        assert np.abs(rec.read(0, 0.0, 30.0) - np.round(x, 4)).max() <= 0.05 + 1e-6


def test_a_folder_pairs_excerpts_with_their_hypnograms(tmp_path):
    for n in (1, 2):
        write_signal(tmp_path / f"excerpt{n}.txt", "C3-A1", [1.0])
        write_hypnogram(tmp_path / f"Hypnogram_excerpt{n}.txt", [5] * 6)
    write_signal(tmp_path / "excerpt4.txt", "C3-A1", [1.0])     # no hypnogram: left out
    (tmp_path / "notes.txt").write_text("a note\n")
    assert [(a.name, b.name) for a, b in find_scored_studies(tmp_path)] == [
        ("excerpt1.txt", "Hypnogram_excerpt1.txt"), ("excerpt2.txt", "Hypnogram_excerpt2.txt")]


def test_pooled_figures_say_which_recordings_and_epochs_they_cover():
    from sleepvlm_ws.core.pipeline.evaluate import EvaluationResult
    from sleepvlm_ws.core.pipeline.evaluation_tables import format_pooled, pooled

    def result(name, ref, model, yasa):
        epochs = [{"index": i, "reference": a.value, "predicted": b.value,
                   "yasa": c.value if c else None} for i, (a, b, c) in enumerate(zip(ref, model, yasa))]
        return EvaluationResult(recording=f"/d/{name}", reference=f"/d/Hypnogram_{name}", model="m",
                                n_epochs=len(ref), model_agreement=None, yasa_agreement=None,
                                yasa_unavailable=None, epochs=epochs)

    one = result("excerpt1.txt", [W, N2, N2, N3], [W, N2, N1, N3], [W, N2, N2, N2])
    three = result("excerpt3.txt", [N1, N2], [N2, N2], [None, None])
    p = pooled([one, three])
    assert p["recordings"] == ["excerpt1.txt", "excerpt3.txt"] and p["yasa_recordings"] == ["excerpt1.txt"]
    assert p["model_agreement"]["n_epochs"] == 6 and p["yasa_agreement"]["n_epochs"] == 4
    sbs = p["side_by_side"]
    assert sbs["recordings"] == ["excerpt1.txt"] and sbs["epochs"] == 4
    assert sbs["model_agreement"]["accuracy"] == 0.75 and sbs["yasa_agreement"]["accuracy"] == 0.75
    assert p["model_agreement"]["accuracy"] == pytest.approx(4 / 6)
    text = "\n".join(format_pooled([one, three]))
    assert ("1 of 2 recordings together, model and YASA on the same 4 epochs "
            "(those YASA staged: excerpt1.txt):") in text
    assert "all 2 recordings together, model only (6 epochs: excerpt1.txt, excerpt3.txt):" in text
    assert "YASA: not staged for excerpt3.txt" in text
    both = "\n".join(format_pooled([one, one]))   # YASA staged everything: one table as before
    assert both.startswith("all 2 recordings together:") and "model only" not in both


# ------------------------------------------------------------------------------ the CLI
def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SLEEPVLM_WS_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "sleepvlm_ws.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_evaluate_on_a_malformed_excerpt_exits_2_with_one_line(tmp_path):
    folder = tmp_path / "dreams"
    folder.mkdir()
    (folder / "excerpt1.txt").write_text("[C3-A1]\n1.0\n2,5\n", encoding="ascii")
    write_hypnogram(folder / "Hypnogram_excerpt1.txt", [5] * 12)
    for args in ([str(folder / "excerpt1.txt"), "--reference", str(folder / "Hypnogram_excerpt1.txt")],
                 [str(folder)]):
        proc = cli(tmp_path / "home", "evaluate", *args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "excerpt1.txt" in lines[0] and "line 3" in lines[0], lines[0]
    unknown = write_signal(folder / "mine.txt", "CZ-A1", sine(128, 60))
    proc = cli(tmp_path / "home", "evaluate", str(unknown), "--reference",
               str(folder / "Hypnogram_excerpt1.txt"))
    assert proc.returncode == 2 and "mine.txt" in proc.stderr and "--rate" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.glob("home/evaluations/*")), "nothing scored for bad input"


def test_the_benchmark_skips_in_one_line_without_the_dev_set(tmp_path):
    log = REPO / "docs" / "measurements" / "dreams-dev-evaluations.md"
    before = hashlib.sha256(log.read_bytes()).hexdigest() if log.exists() else None
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_real_transfer.py"),
                           "--data", str(tmp_path / "absent")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [
        f"bench_real_transfer: skipped: no DREAMS dev set at {tmp_path / 'absent'} (not there)"]
    after = hashlib.sha256(log.read_bytes()).hexdigest() if log.exists() else None
    assert after == before   # a skipped run is no look at the dev set


# ------------------------------------------------------------------------------ real excerpts
@needs_dev
def test_the_real_excerpt_1_and_its_hypnogram():
    sig = dreams.read_signal(DEV / "excerpt1.txt")
    assert (sig.channel, sig.rate, sig.samples.size, sig.duration_s) == ("C3-A1", 100.0, 180000, 1800.0)
    stages = dreams.read_hypnogram(DEV / "Hypnogram_excerpt1.txt")
    assert len(stages) == 60 and all(s in SLEEP_STAGES for s in stages)
    assert stages[0] is W   # the excerpt opens awake (its first 3 minutes are label 5)
    assert [(a.name, b.name) for a, b in find_scored_studies(DEV)] == [
        (f"excerpt{n}.txt", f"Hypnogram_excerpt{n}.txt") for n in (1, 2, 3, 4)]


@needs_dev
def test_yasa_stages_the_real_excerpt_1_through_the_temporary_edf():
    from sleepvlm_ws.core.trust import second_opinion

    with dreams.temporary_edf(DEV / "excerpt1.txt") as edf, Recording.open(edf) as rec:
        result = second_opinion.compute(rec, auto_montage([c.label for c in rec.channels]))
    assert result.channels == {"eeg": "EEG C3-A1"} and result.n_epochs == 60
    assert [o.epoch for o in result.opinions] == list(range(60))
    assert all(o.stage in SLEEP_STAGES for o in result.opinions)


DEFAULT_PACK = REPO / "models" / "default"


@needs_dev
@pytest.mark.skipif(not (DEFAULT_PACK / "manifest.json").is_file(),
                    reason="the default model pack is not in models/default")
def test_a_real_evaluation_of_excerpt_3_runs_the_machinery(tmp_path, monkeypatch):
    """Excerpt 3 (50 Hz) through evaluate_recording: the model renders all 60 epochs (resampled
    to 100 Hz), YASA says why it cannot. Only the machinery is checked, never a figure (figures
    are bench_real_transfer's, and counted there). The default pack, not the tiny random-weight
    one: with random weights the fast pass takes 1-14 s an epoch on 2 cores (its answers run on
    and its stage confidence needs many extra passes), 0.3 s with the trained pack."""
    from sleepvlm_ws.core.model.runtime import LocalRuntime
    from sleepvlm_ws.core.pipeline.evaluate import evaluate_recording
    from sleepvlm_ws.core.pipeline.evaluation_tables import format_result

    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))
    before = {p.name: p.stat().st_mtime_ns for p in DEV.iterdir()}
    runtime = LocalRuntime(DEFAULT_PACK, n_threads=2)
    try:
        r = evaluate_recording(DEV / "excerpt3.txt", DEV / "Hypnogram_excerpt3.txt", runtime,
                               with_rules=False)
    finally:
        runtime.close()
    assert Path(r.recording) == DEV / "excerpt3.txt" and r.n_epochs == 60
    assert r.source == {"format": "DREAMS", "channel": "C3-A1", "rate_hz": 50.0,
                        "edf_label": "EEG C3-A1"}
    assert r.montage == {"C4-M1": "EEG C3-A1"}
    assert r.parse["answers"] == 60   # every epoch went to the model
    assert r.model_agreement is not None and r.model_agreement.n_epochs == 60
    assert [e["reference"] for e in r.epochs] == [
        s.value for s in dreams.read_hypnogram(DEV / "Hypnogram_excerpt3.txt")]
    assert r.yasa_agreement is None and all(e["yasa"] is None for e in r.epochs)
    assert r.yasa_unavailable == "second opinion unavailable: no central EEG channel ≥ 80 Hz in excerpt3.txt"
    text = format_result(r)
    assert "YASA: second opinion unavailable" in text
    assert "channel C3-A1 at 50 Hz, central EEG (C4-M1 role): EEG C3-A1" in text
    # the study file is in the user data folder; nothing was written beside the source
    assert len(list((tmp_path / "home" / "evaluations").glob("*.svlm"))) == 1
    assert {p.name: p.stat().st_mtime_ns for p in DEV.iterdir()} == before
