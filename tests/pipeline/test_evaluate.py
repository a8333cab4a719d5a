"""``sleepvlm-ws evaluate``: the real default pack (models/default) through real llama.cpp on real
EDF files, run as a user runs it (the console script in a subprocess).

Recordings come from the generator (core/synth) with seeds outside the training (1000-1043) and
held-out (9101-9105) ranges. Recordings stay short (one 1-h night, the others 10-30 min) and
llama.cpp gets one thread (its threads busy-wait on a shared 2-core machine).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edf_factory import write_psg_edf  # tests/ is on sys.path (rootdir conftest)

from sleepvlm_ws.core.base.hypnogram import Hypnogram
from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.study.formats import export_hypnogram
from sleepvlm_ws.core.study.formats.edf_plus import LABELS
from sleepvlm_ws.core.synth import generate_night, write_night_edf

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PACK = REPO / "models" / "default"
W, N1, N2, N3, R = Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R
# 30 min with every stage, for the short recordings.
HALF_HOUR = [W] * 6 + [N1] * 4 + [N2] * 20 + [N3] * 15 + [N2] * 5 + [R] * 10
# 10 min (YASA needs 5), for the folder form.
TEN_MIN_A = [W] * 4 + [N1] * 2 + [N2] * 8 + [N3] * 6
TEN_MIN_B = [W] * 3 + [N1] * 2 + [N2] * 6 + [R] * 9
CONFUSION_HEADER = "confusion (model): rows reference, columns predicted"

pytestmark = pytest.mark.skipif(not (DEFAULT_PACK / "manifest.json").is_file(),
                                reason="the default model pack is not in models/default")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The user data folder for every run here (evaluation studies, hash cache, logs)."""
    return tmp_path_factory.mktemp("home")


def evaluate(home: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("sleepvlm-ws", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "sleepvlm_ws.cli"]
    env = dict(os.environ, SLEEPVLM_WS_HOME=str(home))
    env.pop("SLEEPVLM_WS_PACKS", None)
    return subprocess.run([*cmd, "evaluate", *args, "--threads", "1"], capture_output=True,
                          text=True, timeout=600, env=env)


def ok_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def one_line_error(proc: subprocess.CompletedProcess, name: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert name in lines[0] and "Traceback" not in proc.stderr
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_one_channel(night, path: Path) -> Path:
    """Only a central EEG, labelled as an older lab writes it (C3-A1), with the hypnogram."""
    annotations = [(onset, duration, LABELS[stage])
                   for onset, duration, stage in Hypnogram(stages=list(night.stages)).segments()]
    return write_psg_edf(path, {"EEG C3-A1": np.clip(night.signals["C4-M1"], -3276.7, 3276.7)},
                         night.fs, annotations=annotations,
                         ranges={"EEG C3-A1": (-3276.7, 3276.7)})


def check_model_agreement(doc: dict, stages: list[Stage]) -> dict:
    """The per-recording document's shape: figures, one epoch entry per epoch, the reference."""
    agr = doc["model_agreement"]
    assert agr is not None
    for key in ("kappa", "accuracy", "macro_f1", "recall", "confusion"):
        assert key in agr, key
    assert set(agr["recall"]) == {s.value for s in SLEEP_STAGES}
    for stage in SLEEP_STAGES:  # a recall for each stage the reference has, none for the others
        assert (agr["recall"][stage.value] is None) == (stage not in stages), stage
    labels, counts = agr["confusion"]["labels"], agr["confusion"]["counts"]
    assert len(counts) == len(labels) and all(len(row) == len(labels) for row in counts)
    assert sum(map(sum, counts)) == len(stages) == agr["n_epochs"]
    assert doc["n_epochs"] == len(stages)
    assert [e["index"] for e in doc["epochs"]] == list(range(len(stages)))
    assert [e["reference"] for e in doc["epochs"]] == [s.value for s in stages]
    assert all({"index", "reference", "predicted", "yasa"} <= set(e) for e in doc["epochs"])
    # Every epoch answered, every answer a sleep stage, none needing repair (the grammar).
    assert all(e["predicted"] in {s.value for s in SLEEP_STAGES} for e in doc["epochs"])
    assert doc["parse"]["answers"] == len(stages)
    # the tiny pack has random weights: an answer cut at max_tokens can need repair
    assert 0 < doc["parse"]["parsed_without_repair"] <= doc["parse"]["answers"]
    return agr


def test_one_hour_night_json(home, tmp_path):
    night = generate_night(seed=7301, hours=1.0, fs=100.0)
    rec = write_night_edf(night, tmp_path / "night-7301.edf")
    before = sha256(rec)
    doc = ok_json(evaluate(home, str(rec), "--reference", str(rec), "--json"))
    agr = check_model_agreement(doc, night.stages)
    assert doc["model"].startswith("sleepvlm-ws-default")
    # The default model scores held-out generated nights at ~1.0: this is its real behaviour.
    assert agr["kappa"] >= 0.8, agr
    assert agr["accuracy"] >= 0.85, agr
    yasa = doc["yasa_agreement"]
    assert yasa is not None and doc["yasa_unavailable"] is None
    assert yasa["n_epochs"] == len(night.stages) and -1.0 <= yasa["kappa"] <= 1.0
    assert all(e["yasa"] in {s.value for s in SLEEP_STAGES} for e in doc["epochs"])
    # the fused stage (model and YASA pooled): on every epoch both staged; where the two agree it
    # is their stage (a log-linear pool cannot leave a stage both put first)
    fused = doc["fused_agreement"]
    assert fused is not None and fused["n_epochs"] == len(night.stages)
    assert all(e["fused"] in {s.value for s in SLEEP_STAGES} for e in doc["epochs"])
    assert all(e["fused"] == e["predicted"] for e in doc["epochs"] if e["predicted"] == e["yasa"])
    # as offered by default (core/review/suggested_stage.py): YASA's stage wherever it staged
    assert [e["offered"] for e in doc["epochs"]] == [e["yasa"] for e in doc["epochs"]]
    assert doc["offered_agreement"] == yasa
    assert doc["rules"]["epochs"] == len(night.stages)
    assert sha256(rec) == before  # nothing is ever written into a recording


def test_one_channel_recording(home, tmp_path):
    night = generate_night(seed=7311, fs=100.0, stages=HALF_HOUR)
    rec = write_one_channel(night, tmp_path / "c3-only.edf")
    doc = ok_json(evaluate(home, str(rec), "--reference", str(rec), "--json"))
    agr = check_model_agreement(doc, HALF_HOUR)
    assert agr["kappa"] > 0.5, agr  # one EEG channel: no eyes, no chin, still far above chance


def test_fifty_hz_recording_has_model_figures_and_says_why_not_yasa(home, tmp_path):
    night = generate_night(seed=7312, fs=50.0, stages=HALF_HOUR)
    rec = write_night_edf(night, tmp_path / "fifty-hz.edf")
    doc = ok_json(evaluate(home, str(rec), "--reference", str(rec), "--json"))
    agr = check_model_agreement(doc, HALF_HOUR)
    assert agr["kappa"] > 0.5, agr
    assert doc["yasa_agreement"] is None
    why = doc["yasa_unavailable"]
    assert why and "central EEG" in why and "80 Hz" in why and "fifty-hz.edf" in why
    assert all(e["yasa"] is None for e in doc["epochs"])
    # without YASA the model's stage is what the workstation offers
    assert [e["offered"] for e in doc["epochs"]] == [e["predicted"] for e in doc["epochs"]]
    assert doc["offered_agreement"] == agr


def test_folder_text_then_json_resumes_and_pools(home, tmp_path):
    folder = tmp_path / "scored"
    folder.mkdir()
    nights = {"A": generate_night(seed=7321, fs=100.0, stages=TEN_MIN_A),
              "B": generate_night(seed=7322, fs=100.0, stages=TEN_MIN_B)}
    for name, night in nights.items():  # recordings without annotations: the sidecar is the reference
        write_night_edf(night, folder / f"{name}.edf", with_hypnogram=False)
    export_hypnogram(Hypnogram(stages=TEN_MIN_A), "tsv", folder / "A.tsv")
    export_hypnogram(Hypnogram(stages=TEN_MIN_B), "csv", folder / "B.csv")
    # A recording with no hypnogram beside it is not evaluated.
    write_night_edf(generate_night(seed=7323, fs=100.0, stages=TEN_MIN_A), folder / "C.edf",
                    with_hypnogram=False)
    hashes = {p.name: sha256(p) for p in folder.iterdir()}

    text = evaluate(home, str(folder))
    assert text.returncode == 0, text.stderr[-3000:]
    out = text.stdout
    assert "A.edf: 20 epochs; reference A.tsv" in out and "B.edf: 20 epochs; reference B.csv" in out
    assert "C.edf" not in out
    assert out.count("Cohen's kappa") == 3  # A, B, and both together
    assert out.count(CONFUSION_HEADER) == 3
    assert "all 2 recordings together:" in out
    assert "      W     N1     N2     N3      R" in out  # the confusion matrix's column header
    # the fused stage's column beside model and YASA, and the rule that made it, in each table
    assert out.count("model      YASA     fused") == 3 and out.count("fused: log-linear pool") == 3
    assert out.count("as offered (YASA where it staged, else the model)") == 3
    assert "as offered (YASA where it staged, else the model), all 2 recordings: kappa" in out

    doc = ok_json(evaluate(home, str(folder), "--json"))
    assert set(doc) == {"recordings", "pooled"}
    recordings = {Path(r["recording"]).name: r for r in doc["recordings"]}
    assert set(recordings) == {"A.edf", "B.edf"}
    for name, stages in (("A.edf", TEN_MIN_A), ("B.edf", TEN_MIN_B)):
        r = recordings[name]
        check_model_agreement(r, stages)
        # The text run stored the answers: the JSON run reused them, repeating no work.
        assert r["seconds"]["already_stored"] == len(stages)
    pooled = doc["pooled"]["model_agreement"]
    assert pooled["n_epochs"] == len(TEN_MIN_A) + len(TEN_MIN_B)
    assert set(pooled["recall"]) == {"W", "N1", "N2", "N3", "R"}
    assert sum(map(sum, pooled["confusion"]["counts"])) == pooled["n_epochs"]
    correct = sum(e["predicted"] == e["reference"] for r in doc["recordings"] for e in r["epochs"])
    assert pooled["accuracy"] == pytest.approx(correct / pooled["n_epochs"])
    assert doc["pooled"]["yasa_agreement"]["n_epochs"] == pooled["n_epochs"]
    assert {p.name: sha256(p) for p in folder.iterdir()} == hashes


def test_bad_input_is_one_line_exit_2(home, tmp_path):
    rec = write_night_edf(generate_night(seed=7331, fs=100.0, stages=TEN_MIN_A), tmp_path / "rec.edf")
    before = sha256(rec)
    one_line_error(evaluate(home, str(rec)), "rec.edf")  # no --reference
    empty = tmp_path / "no-pairs"
    empty.mkdir()
    shutil.copy(rec, empty / "lonely.edf")
    (empty / "notes.txt").write_text("not a hypnogram\n")
    line = one_line_error(evaluate(home, str(empty)), "no-pairs")
    assert "no recording with a hypnogram" in line
    one_line_error(evaluate(home, str(empty), "--reference", str(rec)), "no-pairs")
    junk = tmp_path / "junk.tsv"
    junk.write_text("hello, this is not a hypnogram\n")
    one_line_error(evaluate(home, str(rec), "--reference", str(junk)), "junk.tsv")
    banana = tmp_path / "banana.tsv"
    banana.write_text("onset\tduration\tstage\n0\t30\tbanana\n")
    one_line_error(evaluate(home, str(rec), "--reference", str(banana)), "banana.tsv")
    unscored = write_night_edf(generate_night(seed=7332, fs=100.0, stages=TEN_MIN_B),
                               tmp_path / "unscored.edf", with_hypnogram=False)
    one_line_error(evaluate(home, str(rec), "--reference", str(unscored)), "unscored.edf")
    one_line_error(evaluate(home, str(rec), "--reference", str(tmp_path / "gone.tsv")), "gone.tsv")
    one_line_error(evaluate(home, str(rec), "--reference", str(rec), "--model",
                            str(tmp_path / "no-such-pack")), "no-such-pack")
    one_line_error(evaluate(home, str(tmp_path / "missing.edf"), "--reference", str(rec)),
                   "missing.edf")
    assert sha256(rec) == before


def test_a_recording_opened_twice_reads_real_samples_in_both(tmp_path):
    """Regression: evaluate (and score, and the GUI's scoring worker) open a recording that is
    already open. pyedflib refuses the second open and then closed the FIRST reader's handle,
    whose reads silently became zeros (the model then saw flat lines)."""
    from sleepvlm_ws.core.signals.recording import Recording

    rec = write_night_edf(generate_night(seed=7341, fs=100.0, stages=[W, N2, N3]),
                          tmp_path / "twice.edf")
    with Recording.open(rec) as first:
        expected = first.read(1, 0.0, 90.0)
        assert np.abs(expected).max() > 1.0
        with Recording.open(rec) as second:
            np.testing.assert_allclose(second.read(1, 0.0, 90.0), expected, atol=0.2)
        np.testing.assert_array_equal(first.read(1, 0.0, 90.0), expected)
    with Recording.open(rec) as again:  # once both are closed, pyedflib reads it again
        assert again.backend == "pyedflib"
        np.testing.assert_array_equal(again.read(1, 0.0, 90.0), expected)
