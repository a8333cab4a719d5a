"""The whole-night scoring run and ``sleepvlm-ws score`` with the real tiny model pack.

The runtime is the real ``LocalRuntime``; where a test must know how often the model was
asked, it is wrapped in a counter that passes every call through.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from drills.drill_common import suggestion_count  # noqa: E402

from sleepvlm_ws.cli import main
from sleepvlm_ws.cli.common import NO_DEFAULT_PACK, default_pack
from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.model.request import EpochImages
from sleepvlm_ws.core.pipeline.scoring_run import ScoringRun
from sleepvlm_ws.core.signals.montage import auto_montage
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study.ai_runs import AI_RUN_FINISHED, AI_RUN_STARTED
from sleepvlm_ws.core.study.study import Study, default_study_path
from sleepvlm_ws.core.study.suggestions import FAST, RATIONALE, SuggestionKey, SuggestionStore
from sleepvlm_ws.core.synth.night import EDF_LABELS, generate_night, write_night_edf

FS = 100.0
STAGES = [Stage.W, Stage.N1, Stage.N2, Stage.N2, Stage.N3, Stage.N3, Stage.R, Stage.W]
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def runtime(tiny_pack, tmp_path_factory):
    from sleepvlm_ws.core.model.runtime import LocalRuntime

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLEEPVLM_WS_HOME", str(tmp_path_factory.mktemp("home")))
        rt = LocalRuntime(tiny_pack, n_threads=2)
    yield rt
    rt.close()


class CountingRuntime:
    """The real runtime, counting what it is asked (target image, pass)."""

    def __init__(self, inner):
        self.inner = inner
        self.model_id = inner.model_id
        self.calls: list[tuple[bytes, bool]] = []

    def suggest(self, images: EpochImages, *, rationale: bool, **kwargs):
        self.calls.append((images.target, rationale))
        return self.inner.suggest(images, rationale=rationale, **kwargs)


def _night_edf(path: Path, stages=STAGES, seed=3) -> Path:
    return write_night_edf(generate_night(seed=seed, fs=FS, stages=list(stages)), path)


def _new_study(rec: Recording, path: Path) -> Path:
    Study.create(path, recording_path=rec.path, n_epochs=rec.n_epochs,
                 montage=auto_montage([c.label for c in rec.channels]), scorer="amy",
                 recording_fingerprint=rec.fingerprint()).close()
    return path


def _run(rec, study_path, rt, **kwargs):
    with Study.open(study_path) as s:
        montage = s.montage
    return ScoringRun(rec, montage, study_path, rt, **kwargs)


def _stored(study_path, model_id, pass_name=FAST) -> list[int]:
    with Study.open(study_path) as s:
        store = SuggestionStore(s)
        return [e for e in range(s.n_epochs)
                if e not in store.missing_epochs(SuggestionKey(model_id, RENDERER_VERSION, pass_name))]


# ----------------------------------------------------------------------- the run itself
def test_a_run_stores_every_epoch_and_resumes_after_a_cancel(tmp_path, runtime):
    rec = Recording.open(_night_edf(tmp_path / "night.edf"))
    study_path = _new_study(rec, tmp_path / "night.sleepvlm")
    first = CountingRuntime(runtime)
    cancel = threading.Event()
    seen = []

    def stop_after_three(done, total, eta):
        seen.append((done, total, eta))
        if done == 3:
            cancel.set()

    summary = _run(rec, study_path, first).run(progress=stop_after_three, cancel_event=cancel)
    assert summary.outcome == "cancelled" and summary.stored[FAST] == 3
    assert len(first.calls) == 3 and not any(rationale for _, rationale in first.calls)
    assert [d for d, _, _ in seen] == [0, 1, 2, 3] and {t for _, t, _ in seen} == {8}
    assert seen[0][2] is None and all(eta > 0 for _, _, eta in seen[1:])
    assert _stored(study_path, runtime.model_id) == [0, 1, 2]

    second = CountingRuntime(runtime)
    seen.clear()
    summary = _run(rec, study_path, second).run(progress=lambda *a: seen.append(a))
    rec.close()
    assert summary.outcome == "completed" and summary.already_stored[FAST] == 3
    assert len(second.calls) == 5 and summary.stored[FAST] == 5
    assert [d for d, _, _ in seen] == list(range(6)) and seen[-1][2] == 0
    # each epoch image drawn once for its three requests (epochs 2..7 here)
    assert summary.images_rendered == 6
    targets = [t for t, _ in first.calls + second.calls]
    assert len(set(targets)) == 8                   # no epoch was asked twice

    with Study.open(study_path) as s:
        layer = SuggestionStore(s).all_for(SuggestionKey(runtime.model_id, RENDERER_VERSION))
        assert sorted(layer) == list(range(8))
        for epoch, suggestion in layer.items():
            assert suggestion.pass_name == FAST and suggestion.stage in (
                Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R)
            assert suggestion.raw and suggestion.prompt_tokens > 0
            assert ("edge_epoch" in suggestion.flags) == (epoch in (0, 7))
        # suggestions are not decisions
        assert s.stages() == [Stage.UNSCORED] * 8 and s.decisions() == []
        runs = [e for e in s.audit_events() if e.kind in (AI_RUN_STARTED, AI_RUN_FINISHED)]
        assert [e.kind for e in runs] == [AI_RUN_STARTED, AI_RUN_FINISHED] * 2
        assert [e.payload["epochs_to_score"] for e in runs[::2]] == [{FAST: 8}, {FAST: 5}]
        assert [e.payload["outcome"] for e in runs[1::2]] == ["cancelled", "completed"]
        assert [e.payload["counts"]["stored"][FAST] for e in runs[1::2]] == [3, 5]
        assert s.verify().ok


def test_a_pack_trained_on_the_authors_pixels_gets_them_and_its_answers_are_kept_apart(tmp_path, tiny_pack):
    """A pack declaring svlm-render-2 (SleepVLM's own weights would) is rendered with the
    authors' renderer, its window placed in the night as their whole-night resampling placed
    it, and its answers are stored under that renderer."""
    from packs import pack_with_renderer

    from sleepvlm_ws.core.model.runtime import LocalRuntime
    from sleepvlm_ws.core.pipeline.scoring_run import EpochImageCache, read_epoch_window
    from sleepvlm_ws.core.signals.montage import read_role
    from sleepvlm_ws.core.signals.render import (AUTHORS_RENDERER_VERSION, EpochWindow, render_epoch,
                                                 render_png)

    pack = pack_with_renderer(tiny_pack, tmp_path, AUTHORS_RENDERER_VERSION)
    path = write_night_edf(generate_night(seed=11, fs=256.0, stages=[Stage.N2] * 20),
                           tmp_path / "n256.edf")
    rec = Recording.open(path)
    rt = LocalRuntime(pack, n_threads=2)
    try:
        assert rt.renderer_version == AUTHORS_RENDERER_VERSION
        study_path = _new_study(rec, tmp_path / "n256.sleepvlm")
        run = _run(rec, study_path, rt, epochs=[19])
        summary = run.run()
        assert summary.renderer_version == AUTHORS_RENDERER_VERSION and summary.stored[FAST] == 1
        with Study.open(study_path) as s:
            store = SuggestionStore(s)
            assert store.get_pass(19, SuggestionKey(rt.model_id, AUTHORS_RENDERER_VERSION, FAST)) is not None
            assert store.get_pass(19, SuggestionKey(rt.model_id, RENDERER_VERSION, FAST)) is None
        montage = run.montage
        # the image sent is the authors' placement: the same as a window cut out of the whole
        # night's samples (EpochWindow.around, as the training pipeline renders) ...
        whole = {role: (None if d is None else read_role(rec, d, 0.0, rec.duration_s))
                 for role, d in montage.roles.items()}
        expected = render_epoch(EpochWindow.around(whole, 19))
        placed = read_epoch_window(rec, montage, 19, AUTHORS_RENDERER_VERSION)
        assert np.abs(render_epoch(placed).astype(int) - expected.astype(int)).max() <= 1
        assert run._image_cache().get(19)[0] == render_png(placed)
        # ... and late in a 256-Hz night it is not the workstation's own pixels
        own = EpochImageCache(rec, montage).get(19)[0]
        assert own != run._image_cache().get(19)[0]
    finally:
        rt.close()
        rec.close()


def test_pause_holds_the_run_until_released(tmp_path, runtime):
    rec = Recording.open(_night_edf(tmp_path / "night.edf", stages=STAGES[:2]))
    study_path = _new_study(rec, tmp_path / "night.sleepvlm")
    pause, cancel = threading.Event(), threading.Event()
    counting = CountingRuntime(runtime)
    held_at = []

    def on_progress(done, total, eta):
        if done == 1:
            pause.set()
            threading.Timer(0.3, lambda: (held_at.append(len(counting.calls)), pause.clear())).start()

    summary = _run(rec, study_path, counting).run(progress=on_progress, pause_event=pause,
                                                  cancel_event=cancel)
    rec.close()
    assert held_at == [1] and summary.outcome == "completed" and len(counting.calls) == 2


def test_epochs_without_signal_are_skipped_and_counted(tmp_path, runtime):
    from edf_factory import write_discontinuous_edf

    night = generate_night(seed=5, fs=FS, stages=STAGES[:3])
    # 1-s records for every second except epoch 1 (30..60 s): a gap in an EDF+D file
    onsets = [float(t) for t in range(90) if not 30 <= t < 60]
    keep = np.concatenate([np.arange(t * 100, t * 100 + 100) for t in map(int, onsets)])
    signals = {EDF_LABELS[role]: night.signals[role][keep] for role in EDF_LABELS}
    path, _ = write_discontinuous_edf(tmp_path / "gap.edf", signals, FS, onsets)
    rec = Recording.open(path)
    study_path = _new_study(rec, tmp_path / "gap.sleepvlm")
    counting = CountingRuntime(runtime)
    summary = _run(rec, study_path, counting).run()
    assert summary.skipped_no_signal == 1 and summary.stored[FAST] == 2
    assert len(counting.calls) == 2
    assert _stored(study_path, runtime.model_id) == [0, 2]
    again = CountingRuntime(runtime)
    summary = _run(rec, study_path, again).run()
    rec.close()
    assert again.calls == [] and summary.skipped_no_signal == 1 and summary.outcome == "completed"
    with Study.open(study_path) as s:
        runs = [e.payload for e in s.audit_events() if e.kind == AI_RUN_FINISHED]
        assert [p["counts"]["skipped_no_signal"] for p in runs] == [1, 1]


def test_rationale_all_adds_a_second_pass(tmp_path, runtime):
    rec = Recording.open(_night_edf(tmp_path / "night.edf", stages=STAGES[:3]))
    study_path = _new_study(rec, tmp_path / "night.sleepvlm")
    counting = CountingRuntime(runtime)
    # random weights ramble to the 1024-token limit: a short budget keeps the test quick
    summary = _run(rec, study_path, counting, rationale="all", epochs=[1],
                   max_tokens={RATIONALE: 12}).run()
    rec.close()
    assert [r for _, r in counting.calls] == [False, True]
    assert summary.stored == {FAST: 1, RATIONALE: 1}
    assert _stored(study_path, runtime.model_id, RATIONALE) == [1]
    with Study.open(study_path) as s:
        store = SuggestionStore(s)
        best = store.get(1, SuggestionKey(runtime.model_id, RENDERER_VERSION))
        fast = store.get_pass(1, SuggestionKey(runtime.model_id, RENDERER_VERSION, FAST))
        slow = store.get_pass(1, SuggestionKey(runtime.model_id, RENDERER_VERSION, RATIONALE))
        assert best.stage is fast.stage and best.rationale == slow.rationale
        assert slow.raw.lstrip("{ \t\r\n").startswith('"reasoning_text"')
        assert slow.completion_tokens == 12 and "truncated" in slow.flags
        assert store.get(0, SuggestionKey(runtime.model_id, RENDERER_VERSION)) is None


def test_explain_one_epoch_and_every_stored_answer_is_reported(tmp_path, runtime):
    from edf_factory import write_discontinuous_edf

    from sleepvlm_ws.errors import InputError

    night = generate_night(seed=6, fs=FS, stages=STAGES[:3])
    onsets = [float(t) for t in range(90) if not 30 <= t < 60]      # epoch 1 is a gap
    keep = np.concatenate([np.arange(t * 100, t * 100 + 100) for t in map(int, onsets)])
    path, _ = write_discontinuous_edf(tmp_path / "gap.edf",
                                      {EDF_LABELS[r]: night.signals[r][keep] for r in EDF_LABELS},
                                      FS, onsets)
    rec = Recording.open(path)
    study_path = _new_study(rec, tmp_path / "gap.sleepvlm")
    reported: list[tuple[int, str]] = []
    counting = CountingRuntime(runtime)
    try:
        run = _run(rec, study_path, counting, max_tokens={RATIONALE: 12},
                   on_stored=lambda e, p: reported.append((e, p)))
        run.run()
        assert reported == [(0, FAST), (2, FAST)]          # the gap epoch stored nothing
        assert run.explain(2) is True                       # one request, the rationale pass
        assert counting.calls[-1][1] is True and len(counting.calls) == 3
        assert reported[-1] == (2, RATIONALE)
        assert run.explain(2) is False and len(counting.calls) == 3   # stored: not asked again
        with pytest.raises(InputError, match="epoch 2 has no signal to explain"):
            run.explain(1)
        with pytest.raises(InputError, match="epoch 4 is outside 1..3"):
            run.explain(3)
        with Study.open(_new_study(rec, tmp_path / "other.sleepvlm")) as other:   # not this run's
            with pytest.raises(ValueError, match="other.sleepvlm"):
                run.explain(0, study=other)
        assert len(counting.calls) == 3 and len(reported) == 3
    finally:
        rec.close()
    assert _stored(study_path, runtime.model_id, RATIONALE) == [2]
    with Study.open(study_path) as s:
        slow = SuggestionStore(s).get_pass(2, SuggestionKey(runtime.model_id, RENDERER_VERSION, RATIONALE))
        assert slow.completion_tokens == 12 and "truncated" in slow.flags


def test_a_run_writes_into_the_study_it_is_given_and_leaves_it_open(tmp_path, runtime):
    from sleepvlm_ws.core.review.session import open_study

    rec = Recording.open(_night_edf(tmp_path / "night.edf"))
    study_path = tmp_path / "night.sleepvlm"
    try:
        with open_study(rec, study_path, scorer="amy") as study:   # created from the open recording
            summary = ScoringRun(rec, study.montage, study_path, runtime).run(study=study)
            assert summary.stored[FAST] == len(STAGES)
            # the same connection sees the answers, and is still usable after the run
            assert len(SuggestionStore(study).all_for(SuggestionKey.of(runtime))) == len(STAGES)
            other = tmp_path / "other.sleepvlm"
            with pytest.raises(ValueError, match="other.sleepvlm"):
                ScoringRun(rec, study.montage, other, runtime).run(study=study)
        assert _stored(study_path, runtime.model_id) == list(range(len(STAGES)))
        # a study of another recording is refused by name, and left as it was
        other_rec = Recording.open(_night_edf(tmp_path / "other.edf", stages=STAGES[:6]))
        try:
            with pytest.raises(Exception, match="belongs to another recording, not other.edf"):
                open_study(other_rec, study_path)
        finally:
            other_rec.close()
    finally:
        rec.close()


def test_a_run_refuses_a_bad_rationale_mode(tmp_path, runtime):
    with pytest.raises(ValueError, match="rationale"):
        ScoringRun(None, auto_montage([]), tmp_path / "x.sleepvlm", runtime, rationale="some")


# ------------------------------------------------------------------------------- the CLI
def _cli(*args, env_home: Path, timeout=240):
    env = dict(os.environ, SLEEPVLM_WS_HOME=str(env_home), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "sleepvlm_ws.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def test_kill_9_mid_run_then_rerun_finishes_without_redoing_work(tmp_path, tiny_pack):
    n_epochs = 6
    edf = _night_edf(tmp_path / "night.edf", stages=STAGES[:n_epochs])
    study_path = tmp_path / "elsewhere.sleepvlm"
    command = ["--scorer", "amy", "score", edf, "--model", tiny_pack, "--study", study_path,
               "--threads", "2"]
    env = dict(os.environ, SLEEPVLM_WS_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "sleepvlm_ws.cli", *map(str, command)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 180
        while suggestion_count(study_path) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "the scoring run stored nothing in time"
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    before = suggestion_count(study_path)
    assert 2 <= before < n_epochs

    result = _cli(*command, env_home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert f"{n_epochs - before} suggestion(s) stored" in result.stdout
    assert f"{before} epoch(s) already scored" in result.stdout
    assert "scoring" in result.stderr                      # the progress bar
    assert suggestion_count(study_path) == n_epochs
    assert not default_study_path(edf).exists()            # --study was honoured
    with Study.open(study_path) as s:
        starts = [e.payload for e in s.audit_events() if e.kind == AI_RUN_STARTED]
        ends = [e.payload for e in s.audit_events() if e.kind == AI_RUN_FINISHED]
    assert [p["epochs_to_score"][FAST] for p in starts] == [n_epochs, n_epochs - before]
    assert [p["counts"]["model_calls"] for p in ends] == [n_epochs - before]  # killed run: no end
    verify = _cli("audit", "verify", study_path, env_home=tmp_path / "home")
    assert verify.returncode == 0, verify.stderr

    again = _cli(*command, env_home=tmp_path / "home")        # all done: nothing asked
    assert again.returncode == 0, again.stderr
    assert f"0 suggestion(s) stored, {n_epochs} epoch(s) already scored" in again.stdout


def _one_line_error(capsys, code: int, *needles: str) -> str:
    out = capsys.readouterr()
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sleepvlm-ws: "), out.err
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_score_cli_bad_input_is_exit_2_with_one_line(tmp_path, tiny_pack, capsys):
    edf = _night_edf(tmp_path / "night.edf", stages=STAGES[:2])
    junk = tmp_path / "junk.edf"
    junk.write_bytes(b"not an edf file at all" * 20)

    _one_line_error(capsys, main(["score", str(tmp_path / "missing.edf"), "--model",
                                  str(tiny_pack)]), "missing.edf")
    _one_line_error(capsys, main(["score", str(junk), "--model", str(tiny_pack)]), "junk.edf")
    not_a_pack = tmp_path / "not-a-pack"
    not_a_pack.mkdir()
    _one_line_error(capsys, main(["score", str(edf), "--model", str(not_a_pack)]),
                    "not a model pack")
    _one_line_error(capsys, main(["score", str(edf), "--model", str(tmp_path / "nowhere")]),
                    "not found")

    changed = tmp_path / "changed-pack"
    shutil.copytree(tiny_pack, changed)
    prompt = next(p for p in changed.iterdir() if p.suffix == ".txt")
    data = bytearray(prompt.read_bytes())
    data[10] = ord("x") if data[10] != ord("x") else ord("y")   # same size, other bytes
    prompt.write_bytes(bytes(data))
    _one_line_error(capsys, main(["score", str(edf), "--model", str(changed)]), "sha256")

    other = _night_edf(tmp_path / "other.edf", stages=STAGES[:3], seed=9)
    with Recording.open(other) as rec:
        other_study = _new_study(rec, tmp_path / "other.sleepvlm")
    _one_line_error(capsys, main(["score", str(edf), "--model", str(tiny_pack), "--study",
                                  str(other_study)]), "belongs to another recording")
    assert suggestion_count(other_study) == 0

    # argument errors: argparse's usage and its one error line, exit 2
    for args, needle in ((["--rationale", "some"], "invalid choice: 'some'"),
                         (["--threads", "0"], "must be 1 or more")):
        assert main(["score", str(edf), *args]) == 2
        assert needle in capsys.readouterr().err.strip().splitlines()[-1]
    if default_pack() is None:
        _one_line_error(capsys, main(["score", str(edf)]), NO_DEFAULT_PACK)
    # nothing was scored, and no study was made for a run that could not start
    assert not default_study_path(edf).exists()
