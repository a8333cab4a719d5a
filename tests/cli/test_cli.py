"""The headless commands, run as a user runs them: the installed console script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.study.study import Study, default_study_path
from sleepvlm_ws.core.synth import generate_night, write_night_edf

STAGES = [Stage.W] * 3 + [Stage.N1] * 2 + [Stage.N2] * 5 + [Stage.N3] * 4 + [Stage.R] * 4 + [Stage.W] * 2


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("sleepvlm-ws", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "sleepvlm_ws.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "night.edf"
    write_night_edf(generate_night(seed=11, fs=128.0, stages=STAGES), path)
    return path


def one_line_error(proc: subprocess.CompletedProcess, name: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert name in lines[0] and "Traceback" not in proc.stderr


def test_info_text_and_json(recording):
    proc = run("info", str(recording))
    assert proc.returncode == 0, proc.stderr
    assert "20 epochs" in proc.stdout and "EEG C4-M1" in proc.stdout and "128 Hz" in proc.stdout
    info = json.loads(run("info", str(recording), "--json").stdout)
    assert info["n_epochs"] == len(STAGES)
    assert info["montage"]["C4-M1"] == "EEG C4-M1"
    assert info["missing_roles"] == []
    assert [c["label"] for c in info["channels"]][:2] == ["EEG F4-M1", "EEG C4-M1"]


def test_bad_input_is_one_line_exit_2(tmp_path):
    junk = tmp_path / "junk.edf"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    before = junk.read_bytes()
    one_line_error(run("info", str(junk)), "junk.edf")
    assert junk.read_bytes() == before
    one_line_error(run("info", str(tmp_path / "missing.edf")), "missing.edf")
    one_line_error(run("audit", "verify", str(junk)), "junk.edf")
    one_line_error(run("export", str(tmp_path / "none.sleepvlm"), "--format", "tsv", "--out",
                       str(tmp_path / "x.tsv")), "none.sleepvlm")
    proc = run("export", "x", "--format", "docx", "--out", "y")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_import_export_verify_and_tamper(recording, tmp_path):
    # Import the hypnogram carried in the recording's own annotations (Sleep-EDF style) ...
    rec = tmp_path / recording.name
    shutil.copy(recording, rec)
    proc = run("--scorer", "alice", "import", str(rec), str(rec))
    assert proc.returncode == 0, proc.stderr
    study_path = default_study_path(rec)
    with Study.open(study_path) as study:
        assert study.stages() == STAGES
        assert {d.source for d in study.decisions()} == {"imported"}
        assert {d.scorer for d in study.decisions()} == {"alice"}
    # ... export it in every format and read each back into a fresh study.
    for fmt in ("tsv", "csv", "edf", "xml", "json"):
        out = tmp_path / f"hyp.{fmt}"
        proc = run("export", str(study_path), "--format", fmt, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        other = tmp_path / fmt / rec.name
        other.parent.mkdir()
        shutil.copy(rec, other)
        assert run("import", str(other), str(out)).returncode == 0
        with Study.open(default_study_path(other)) as study:
            assert study.stages() == STAGES, fmt
    doc = json.loads((tmp_path / "hyp.json").read_text())
    assert len(doc["decisions"]) == len(STAGES) and doc["audit"][0]["kind"] == "study_created"

    proc = run("audit", "verify", str(study_path))
    assert proc.returncode == 0 and "intact" in proc.stdout
    # Tamper: change one decision's stage behind the application's back.
    with sqlite3.connect(study_path) as db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
            db.execute(f"DROP TRIGGER {name}")
        db.execute("UPDATE epochs SET stage='R' WHERE epoch=5")
    proc = run("audit", "verify", str(study_path))
    assert proc.returncode == 1
    assert "epoch 5" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_every_study_argument_accepts_the_recording(recording, tmp_path):
    """As the README says: a recording stands for the study beside it, for export, audit
    verify and report alike (a recording without one is refused in one line)."""
    rec = tmp_path / recording.name
    shutil.copy(recording, rec)
    assert run("import", str(rec), str(rec)).returncode == 0
    proc = run("audit", "verify", str(rec))
    assert proc.returncode == 0, proc.stderr
    assert "intact" in proc.stdout and default_study_path(rec).name in proc.stdout
    pdf = tmp_path / "night.pdf"
    proc = run("report", str(rec), "--out", str(pdf))
    assert proc.returncode == 0, proc.stderr
    assert pdf.read_bytes().startswith(b"%PDF")
    lone = tmp_path / "lone.edf"
    shutil.copy(recording, lone)
    one_line_error(run("audit", "verify", str(lone)), "lone.edf")
    one_line_error(run("report", str(lone), "--out", str(tmp_path / "lone.pdf")), "lone.edf")


@pytest.mark.parametrize("command", ["open", "demo"])
def test_a_window_command_without_a_display_says_so_in_one_line(command, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["SLEEPVLM_WS_HOME"] = str(tmp_path / "home")
    proc = run(command, "--exit-after", "1", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0] and "--screenshot" in lines[0], proc.stderr


def test_open_without_a_display_draws_offscreen_when_asked_for_a_screenshot(recording, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["SLEEPVLM_WS_HOME"] = str(tmp_path / "home")
    rec = tmp_path / recording.name
    shutil.copy(recording, rec)
    shot = tmp_path / "open.png"
    proc = run("open", str(rec), "--no-model", "--screenshot", str(shot), "--exit-after", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_deidentified_export_carries_no_identifiers(recording, tmp_path):
    rec = tmp_path / "PATIENT_DOE_JANE.edf"
    shutil.copy(recording, rec)
    assert run("import", str(rec), str(rec)).returncode == 0
    out = tmp_path / "deid.json"
    assert run("export", str(rec), "--format", "json", "--out", str(out), "--deidentify").returncode == 0
    text = out.read_text()
    assert "PATIENT_DOE_JANE" not in text and "2026-01-15" not in text
    assert json.loads(text)["stages"][:3] == ["W", "W", "W"]


def test_synth_writes_a_readable_night(tmp_path):
    out = tmp_path / "s.edf"
    assert run("synth", str(out), "--hours", "0.5", "--fs", "100", "--seed", "3").returncode == 0
    info = json.loads(run("info", str(out), "--json").stdout)
    assert info["n_epochs"] == 60 and info["channels"][0]["fs"] == 100
