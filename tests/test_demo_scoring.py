"""``sleepvlm-ws demo`` loads the default model pack and scores the night in the background;
``--no-model`` opts out. Run as a user runs it: the console script in a subprocess, offscreen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study.formats import import_hypnogram
from sleepvlm_ws.core.study.study import Study, default_study_path
from sleepvlm_ws.core.study.suggestions import SuggestionStore
from sleepvlm_ws.demo import DEMO_NAME, ensure_demo_recording
from sleepvlm_ws.ui.app import FIRST_SUGGESTIONS

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PACK = REPO / "models" / "default"
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(not (DEFAULT_PACK / "manifest.json").is_file(),
                                reason="the default model pack is not in models/default")


@pytest.fixture(scope="module")
def demo_night(tmp_path_factory) -> Path:
    """The demo recording, generated once for this module (~10 s)."""
    return ensure_demo_recording(tmp_path_factory.mktemp("demo-night"), progress=lambda m: None)


@pytest.fixture
def home(tmp_path, demo_night) -> Path:
    """A fresh user data folder holding a copy of the demo night (so no study is shared), with
    the model on one CPU thread (llama.cpp's threads busy-wait on a shared machine)."""
    home = tmp_path / "home"
    (home / "demo").mkdir(parents=True)
    shutil.copy(demo_night, home / "demo" / DEMO_NAME)
    (home / "model-settings.json").write_text(json.dumps({"threads": 1}), encoding="utf-8")
    return home


def demo(home: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("sleepvlm-ws", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "sleepvlm_ws.cli"]
    env = dict(os.environ, SLEEPVLM_WS_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    env.pop("SLEEPVLM_WS_PACKS", None)
    return subprocess.run([*cmd, "demo", *args], capture_output=True, text=True, timeout=300, env=env)


def suggestions_by_model(study_path: Path) -> dict[str, dict]:
    with Study.open(study_path) as study:
        store = SuggestionStore(study)
        assert all(s is Stage.UNSCORED for s in study.stages())  # the AI never scores on its own
        return {key.model_id: store.all_for(key) for key, _n in store.models()}


def test_demo_scores_the_night_with_the_default_pack(home, tmp_path):
    shot = tmp_path / "demo.png"
    proc = demo(home, "--screenshot", str(shot), "--exit-after", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert shot.read_bytes()[:8] == PNG
    recording = home / "demo" / DEMO_NAME
    study_path = default_study_path(recording)
    assert study_path.is_file()
    lm_sha = json.loads((DEFAULT_PACK / "manifest.json").read_text())["files"]["lm"]["sha256"]
    by_model = suggestions_by_model(study_path)
    assert set(by_model) == {lm_sha}
    found = by_model[lm_sha]
    # The screenshot waits for the first suggestions; the run may have stored a few more.
    assert len(found) >= FIRST_SUGGESTIONS >= 3
    assert all(s.stage in SLEEP_STAGES and s.renderer_version == RENDERER_VERSION
               for s in found.values())
    # They are the model's real answers about the demo night: they match its own hypnogram.
    reference = import_hypnogram(recording, n_epochs=max(found) + 1).stages
    matching = sum(s.stage is reference[e] for e, s in found.items())
    assert matching >= 0.6 * len(found), {e: (s.stage, reference[e]) for e, s in found.items()}


def test_demo_without_the_model_stores_no_suggestions(home, tmp_path):
    shot = tmp_path / "manual.png"
    proc = demo(home, "--no-model", "--screenshot", str(shot), "--exit-after", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert shot.read_bytes()[:8] == PNG
    study_path = default_study_path(home / "demo" / DEMO_NAME)
    assert study_path.is_file()
    assert suggestions_by_model(study_path) == {}


def test_demo_with_the_model_but_no_scoring_stores_no_suggestions(home):
    proc = demo(home, "--no-score", "--exit-after", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert suggestions_by_model(default_study_path(home / "demo" / DEMO_NAME)) == {}


def test_open_loads_the_default_pack_and_resumes_the_study_s_scoring(home, tmp_path):
    """``open night.edf`` works as ``demo`` does: the default pack is loaded and scores what the
    study still lacks, so a reopened study resumes its unfinished run (answers kept, none
    asked twice); ``--no-model`` opens it for manual scoring."""
    recording = home / "demo" / DEMO_NAME
    env = dict(os.environ, SLEEPVLM_WS_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    env.pop("SLEEPVLM_WS_PACKS", None)
    exe = shutil.which("sleepvlm-ws", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "sleepvlm_ws.cli"]

    def open_(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cmd, "open", str(recording), *args], capture_output=True, text=True,
                              timeout=300, env=env)

    proc = open_("--no-model", "--exit-after", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert suggestions_by_model(default_study_path(recording)) == {}
    proc = open_("--screenshot", str(tmp_path / "open.png"), "--exit-after", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = next(iter(suggestions_by_model(default_study_path(recording)).values()))
    assert len(first) >= FIRST_SUGGESTIONS
    proc = open_("--screenshot", str(tmp_path / "again.png"), "--exit-after", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = next(iter(suggestions_by_model(default_study_path(recording)).values()))
    assert len(again) > len(first) and all(again[e].id == s.id for e, s in first.items())
    with Study.open(default_study_path(recording)) as study:
        assert sum(e.kind == "ai_run_started" for e in study.audit_events()) == 2
