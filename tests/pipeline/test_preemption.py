"""The epoch on screen preempts the background pass: a request of the real tiny model gives way
half-way, the run answers the urgent request, then asks its own epoch again, and nothing is
answered differently for having been interrupted.

Where the click lands is chosen with ``ClickAt``: a real ``threading.Event`` that the runtime
looks at (between the prompt's chunks, before each token) and that sets itself at the n-th
look, so a test interrupts mid-prompt or mid-answer exactly where it means to.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.model.request import RequestInterrupted
from sleepvlm_ws.core.pipeline.epoch_images import EpochImageCache
from sleepvlm_ws.core.pipeline.scoring_run import ScoringRun
from sleepvlm_ws.core.signals.montage import auto_montage
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.core.study.study import Study
from sleepvlm_ws.core.study.suggestions import FAST, RATIONALE, SuggestionKey, SuggestionStore
from sleepvlm_ws.core.synth.night import generate_night, write_night_edf

STAGES = [Stage.W, Stage.N1, Stage.N2, Stage.N2, Stage.N3, Stage.R, Stage.N2, Stage.W]


class ClickAt(threading.Event):
    """An Event that sets itself on the ``at``-th time it is looked at (None: never); counts
    the looks."""

    def __init__(self, at: int | None = None):
        super().__init__()
        self.looks = 0
        self.at = at

    def arm(self, at: int) -> None:
        self.looks, self.at = 0, at

    def is_set(self) -> bool:
        self.looks += 1
        if self.at is not None and self.looks >= self.at:
            self.at = None
            self.set()
        return super().is_set()


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


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = write_night_edf(generate_night(seed=5, fs=100.0, stages=list(STAGES)),
                           tmp_path_factory.mktemp("night") / "night.edf")
    rec = Recording.open(path)
    yield rec
    rec.close()


def _study(rec: Recording, path: Path) -> Path:
    Study.create(path, recording_path=rec.path, n_epochs=rec.n_epochs,
                 montage=auto_montage([c.label for c in rec.channels]), scorer="amy",
                 recording_fingerprint=rec.fingerprint()).close()
    return path


def _images(rec: Recording, runtime):
    return EpochImageCache(rec, auto_montage([c.label for c in rec.channels]), 6,
                           runtime.renderer_version)


def test_an_interrupted_request_gives_way_and_the_model_answers_the_same_afterwards(recording, runtime):
    images = _images(recording, runtime)
    urgent = images.request_images(5, recording.n_epochs)
    background = images.request_images(2, recording.n_epochs)
    expected = runtime.suggest(urgent, rationale=True, max_tokens=60).raw
    counting = ClickAt()
    runtime.suggest(background, rationale=True, max_tokens=60, interrupt=counting)
    assert not counting.is_set() and counting.looks > 12    # looked at between chunks and tokens
    for at in (1, 3, 6, 12):                  # after the first prompt chunk, among the images, mid-answer
        click = ClickAt(at)
        with pytest.raises(RequestInterrupted):
            runtime.suggest(background, rationale=True, max_tokens=60, interrupt=click)
        assert click.looks == at              # gave way at the very look that saw the click
        assert runtime.suggest(urgent, rationale=True, max_tokens=60).raw == expected
    # an interrupt never set, or none at all: the same answer as before
    assert runtime.suggest(urgent, rationale=True, max_tokens=60, interrupt=threading.Event()).raw == expected


def test_a_run_lets_the_epoch_on_screen_go_first_and_stores_the_same_night(tmp_path, recording, runtime):
    montage = auto_montage([c.label for c in recording.channels])
    plain = _study(recording, tmp_path / "plain.sleepvlm")
    ScoringRun(recording, montage, plain, runtime).run()

    preempted = _study(recording, tmp_path / "preempted.sleepvlm")
    click = ClickAt()
    order: list[tuple[int, str]] = []
    given_way: list[int] = []

    def on_stored(epoch: int, pass_name: str) -> None:
        order.append((epoch, pass_name))
        if (epoch, pass_name) == (2, FAST):
            click.arm(8)              # Explain pressed while epoch 3 (index 3) is being asked

    def on_interrupted() -> None:     # what the GUI's worker does: answer the epoch on screen
        given_way.append(len(order))
        run.explain(6)

    run = ScoringRun(recording, montage, preempted, runtime, on_stored=on_stored,
                     interrupt=click, on_interrupted=on_interrupted)
    summary = run.run()
    assert summary.outcome == "completed" and summary.interruptions == summary.gave_way == 1
    assert given_way == [3]
    assert order[:5] == [(0, FAST), (1, FAST), (2, FAST), (6, RATIONALE), (3, FAST)]
    assert not click.is_set()        # the run cleared what it gave way for
    key = SuggestionKey(str(runtime.model_id), runtime.renderer_version)
    with Study.open(plain) as a, Study.open(preempted) as b:
        first, second = SuggestionStore(a).all_for(key.for_pass(FAST)), SuggestionStore(b).all_for(
            key.for_pass(FAST))
        assert sorted(first) == sorted(second) == list(range(recording.n_epochs))
        assert all(first[e].raw == second[e].raw for e in first)   # asked again, answered the same
        assert SuggestionStore(b).get_pass(6, key.for_pass(RATIONALE)).rationale is not None
        finished = [e for e in b.audit_events() if e.kind == "ai_run_finished"][-1]
        assert finished.payload["counts"]["interruptions"] == 1


def test_interrupt_and_its_callback_go_together(tmp_path, recording, runtime):
    montage = auto_montage([c.label for c in recording.channels])
    study = _study(recording, tmp_path / "s.sleepvlm")
    with pytest.raises(ValueError, match="go together"):
        ScoringRun(recording, montage, study, runtime, interrupt=threading.Event())
    with pytest.raises(ValueError, match="go together"):
        ScoringRun(recording, montage, study, runtime, on_interrupted=lambda: None)


def test_the_rationale_pass_does_not_ask_again_what_explain_answered_meanwhile(tmp_path, recording, runtime):
    montage = auto_montage([c.label for c in recording.channels])
    study = _study(recording, tmp_path / "s.sleepvlm")
    click = ClickAt()
    order: list[tuple[int, str]] = []
    passes_named: list[str] = []

    def on_stored(epoch: int, pass_name: str) -> None:
        order.append((epoch, pass_name))
        if (epoch, pass_name) == (3, RATIONALE):
            click.arm(3)              # Explain pressed for epoch 4 while the run asks for it

    def progress(done, total, eta) -> None:
        if run.current_pass not in passes_named:
            passes_named.append(run.current_pass)

    run = ScoringRun(recording, montage, study, runtime, rationale="all", max_tokens={RATIONALE: 40},
                     on_stored=on_stored, interrupt=click, on_interrupted=lambda: run.explain(4))
    summary = run.run(progress=progress)
    n = recording.n_epochs
    assert summary.outcome == "completed" and summary.interruptions == summary.gave_way == 1
    assert order.count((4, RATIONALE)) == 1 and order[n + 4] == (4, RATIONALE)   # stored by Explain
    assert summary.stored[RATIONALE] == n - 1 and summary.model_calls == 2 * n - 1  # not asked twice
    assert passes_named == [FAST, RATIONALE]
