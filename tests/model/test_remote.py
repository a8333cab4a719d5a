"""RemoteRuntime against a real OpenAI-compatible server: llama-cpp-python's own, on loopback,
serving the tiny model pack (needs the server extras: fastapi, uvicorn, sse-starlette,
starlette-context, pydantic-settings)."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from llama_cpp_server import ALIAS, API_KEY, free_port, serving  # noqa: E402

from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.model.model_pack import verify_pack
from sleepvlm_ws.core.model.remote import RemotePool, RemoteRuntime, RemoteServerError
from sleepvlm_ws.core.model.request import blank_epoch_png, request_images
from sleepvlm_ws.core.pipeline.scoring_run import EpochImageCache, ScoringRun, study_montage
from sleepvlm_ws.core.signals.montage import auto_montage
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study.study import Study
from sleepvlm_ws.core.study.suggestions import FAST, SuggestionKey, SuggestionStore
from sleepvlm_ws.core.synth.night import generate_night, write_night_edf
from sleepvlm_ws.errors import InputError

pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server extras are missing")



@pytest.fixture(scope="module")
def night(tmp_path_factory):
    folder = tmp_path_factory.mktemp("night")
    stages = [Stage.W, Stage.N2, Stage.N3]
    return write_night_edf(generate_night(seed=11, fs=100.0, stages=stages), folder / "n.edf")


def _remote(server, manifest, **kwargs) -> RemoteRuntime:
    # token probabilities are asked for only where a test is about them: llama-cpp-python's
    # server finds them by sorting the vocabulary in Python for every token (most of an answer's
    # time here), and for the tiny random model they give no probability anyway
    kwargs.setdefault("logprobs", False)
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("timeout", 120)
    return RemoteRuntime(server, system_prompt=manifest.system_prompt(),
                         rule_ids=manifest.rule_vocabulary, **kwargs)


def _images(night, epoch=1):
    rec = Recording.open(night)
    try:
        cache = EpochImageCache(rec, auto_montage([c.label for c in rec.channels]))
        return cache.request_images(epoch, rec.n_epochs)
    finally:
        rec.close()


def test_a_remote_answer_is_parsed_like_a_local_one(server, pack_manifest, night, tiny_pack):
    remote = _remote(server, pack_manifest)
    assert remote.models() == [ALIAS] and remote.model_id == f"remote:{ALIAS}"
    images = _images(night)
    body = remote.request_body(images, rationale=False)
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.0, 0.8, 128)
    assert body["grammar"].startswith("# SleepVLM answer: coarse")
    assert body["messages"][0] == {"role": "system", "content": pack_manifest.system_prompt()}

    got = remote.suggest(images, rationale=False)
    assert got.answer.stage in SLEEP_STAGES and got.answer.ok, got.raw
    assert got.answer.rules and got.raw == got.answer.raw
    assert got.prompt_tokens > 0 and got.completion_tokens > 0 and got.finish_reason == "stop"

    # the same request run in-process gives the same greedy answer
    from sleepvlm_ws.core.model.runtime import LocalRuntime

    with LocalRuntime(tiny_pack, n_threads=2, keep_prompt_cache=False) as local:
        here = local.suggest(images, rationale=False)
    assert json.loads(got.raw) == json.loads(here.raw)


def test_token_probabilities_are_asked_for_and_never_made_up(pack_manifest, night, tmp_path):
    """llama-cpp-python's server with ``logits_all`` (mtmd chat format) returns the raw logits'
    top tokens, and for the tiny random model they name no stage the grammar allows: the answer
    has no probability, and the request still asked for them (a server whose top tokens name
    the stages is read by stage_confidence.distribution_from_logprobs, tested by hand in
    test_stage_confidence)."""
    images = _images(night)
    with serving(pack_manifest, alias=ALIAS, api_key=API_KEY, log_dir=tmp_path, logits_all=True) as url:
        remote = _remote(url, pack_manifest, logprobs=True)
        body = remote.request_body(images, rationale=False)
        assert body["logprobs"] is True and body["top_logprobs"] == 20
        got = remote.suggest(images, rationale=False)
        free = _remote(url, pack_manifest, grammar=False, logprobs=True)
        assert "logprobs" not in free.request_body(images, rationale=False)
    assert got.answer.stage in SLEEP_STAGES
    assert got.confidence is None and got.stage_probability is None
    assert got.stage_probabilities is None
    assert remote.logprobs                  # not refused: it keeps asking


def test_a_server_that_refuses_probabilities_is_asked_again_without_them(server, pack_manifest, night):
    """Without ``logits_all`` llama-cpp-python's server answers a request for token
    probabilities with HTTP 500: the runtime asks once more without them, answers with no
    probability, and stops asking that server (the next answer is the same greedy answer)."""
    images = _images(night)
    remote = _remote(server, pack_manifest, logprobs=True)
    assert "logprobs" in remote.request_body(images, rationale=False)
    got = remote.suggest(images, rationale=False)
    assert got.answer.ok and got.answer.stage in SLEEP_STAGES and got.confidence is None
    assert not remote.logprobs and "logprobs" not in remote.request_body(images, rationale=False)
    again = remote.suggest(images, rationale=False)
    assert again.raw == got.raw


def test_edge_requests_are_flagged_and_the_schema_form_also_works(server, pack_manifest, night):
    images = _images(night, epoch=0)
    assert images.prev is None
    remote = _remote(server, pack_manifest, grammar=False, response_format="json_object")
    body = remote.request_body(images, rationale=False)
    assert "grammar" not in body
    assert body["response_format"]["type"] == "json_object"
    assert list(body["response_format"]["schema"]["properties"]) == ["applicable_rules",
                                                                    "sleep_stage"]
    got = remote.suggest(images, rationale=False)
    assert got.answer.stage in SLEEP_STAGES, got.raw
    assert "edge_epoch" in got.answer.flags


def test_a_scoring_run_through_the_server_stores_under_the_remote_id(server, pack_manifest,
                                                                     night, tmp_path):
    rec = Recording.open(night)
    study_path = tmp_path / "n.sleepvlm"
    montage = study_montage(rec, study_path, "amy")
    summary = ScoringRun(rec, montage, study_path, _remote(server, pack_manifest),
                         epochs=[0, 2]).run()
    rec.close()
    assert summary.outcome == "completed" and summary.stored[FAST] == 2
    with Study.open(study_path) as s:
        layer = SuggestionStore(s).all_for(SuggestionKey(f"remote:{ALIAS}", RENDERER_VERSION))
        assert sorted(layer) == [0, 2] and all(x.stage in SLEEP_STAGES for x in layer.values())
        assert s.verify().ok


def test_a_wrong_or_missing_api_key_is_one_clear_line(server, pack_manifest, night):
    images = _images(night)
    for key in ("wrong", None):
        remote = _remote(server, pack_manifest, api_key=key, model=ALIAS)
        with pytest.raises(RemoteServerError) as info:
            remote.suggest(images, rationale=False)
        message = str(info.value)
        assert "HTTP 401" in message and "API key" in message and server in message
        assert "\n" not in message


def test_an_unreachable_or_silent_server_fails_within_the_timeout(pack_manifest):
    images = request_images(None, blank_epoch_png(), None)
    prompt = pack_manifest.system_prompt()
    closed = RemoteRuntime(f"http://127.0.0.1:{free_port()}", model="m", system_prompt=prompt,
                           timeout=5)
    with pytest.raises(RemoteServerError, match="cannot reach the AI server"):
        closed.suggest(images, rationale=False)

    # a loopback listener that accepts and never answers
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted = []
    stop = threading.Event()

    def accept_and_hold():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    try:
        silent = RemoteRuntime(f"http://127.0.0.1:{listener.getsockname()[1]}/v1/", model="m",
                               system_prompt=prompt, timeout=0.5)
        with pytest.raises(RemoteServerError, match=r"no answer within 0.5 s"):
            silent.suggest(images, rationale=False)
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.mark.parametrize("url", ["", "ftp://host/x", "127.0.0.1:8080", "http://", "http://h/?q=1",
                                 "http://user:secret@h:8080"])
def test_a_bad_server_address_is_refused(url):
    with pytest.raises(RemoteServerError) as info:
        RemoteRuntime(url, system_prompt="prompt")
    assert "secret" not in str(info.value)


def test_a_system_prompt_is_required():
    with pytest.raises(ValueError, match="system prompt"):
        RemoteRuntime("http://127.0.0.1:1", system_prompt=" ")
    with pytest.raises(ValueError, match="response_format"):
        RemoteRuntime("http://127.0.0.1:1", system_prompt="p", response_format="yaml")


def test_from_pack_reads_prompt_and_rules(tiny_pack, tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path))
    remote = RemoteRuntime.from_pack("http://127.0.0.1:1/v1", tiny_pack, model="m",
                                     model_id="abc")
    manifest = verify_pack(tiny_pack)
    assert remote.system_prompt == manifest.system_prompt()
    assert remote.rule_ids == tuple(manifest.rule_vocabulary)
    assert remote.base_url == "http://127.0.0.1:1" and remote.model_id == "abc"


# -- several requests in flight: ScoringRun(parallel=N), RemotePool, `score --server` ----------
@pytest.fixture(scope="module")
def longer_night(tmp_path_factory):
    folder = tmp_path_factory.mktemp("longer")
    stages = [Stage.W, Stage.W, Stage.N1, Stage.N2, Stage.N2, Stage.N3, Stage.N3, Stage.R]
    return write_night_edf(generate_night(seed=12, fs=100.0, stages=stages), folder / "l.edf")


def _layer(path, model_id=f"remote:{ALIAS}"):
    with Study.open(path) as s:
        assert s.verify().ok
        return SuggestionStore(s).all_for(SuggestionKey(model_id, RENDERER_VERSION))


def test_a_parallel_run_stores_every_epoch_once_with_the_sequential_answers(
        server, pack_manifest, longer_night, tmp_path):
    rec = Recording.open(longer_night)
    try:
        answers = {}
        for parallel in (1, 3):
            path = tmp_path / f"p{parallel}.sleepvlm"
            montage = study_montage(rec, path, "amy")
            seen = []
            summary = ScoringRun(rec, montage, path, _remote(server, pack_manifest),
                                 parallel=parallel).run(progress=lambda d, t, e: seen.append(d))
            assert summary.outcome == "completed" and summary.model_calls == rec.n_epochs == 8
            assert summary.stored[FAST] == 8 and seen == list(range(9))
            answers[parallel] = {e: (s.stage, tuple(s.rules)) for e, s in _layer(path).items()}
    finally:
        rec.close()
    assert sorted(answers[3]) == list(range(8)) and answers[3] == answers[1]


def test_a_failed_request_stops_the_run_but_keeps_the_answers_already_paid_for(
        server, pack_manifest, longer_night, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    runtimes = [_remote(server, pack_manifest, model=ALIAS),
                _remote(dead, pack_manifest, model=ALIAS, timeout=5)]
    pool = RemotePool(runtimes)
    path = tmp_path / "f.sleepvlm"
    rec = Recording.open(longer_night)
    try:
        montage = study_montage(rec, path, "amy")
        with pytest.raises(RemoteServerError, match="cannot reach the AI server"):
            ScoringRun(rec, montage, path, pool, parallel=4).run()
        kept = sorted(_layer(path))
        # the live server answered the requests sent to it before the dead one's failure came
        # back, and those answers were stored; a resumed run asks only for the rest
        assert 0 < len(kept) < 8
        again = ScoringRun(rec, montage, path, _remote(server, pack_manifest), parallel=2).run()
    finally:
        rec.close()
    assert again.already_stored[FAST] == len(kept) and again.model_calls == 8 - len(kept)
    assert sorted(_layer(path)) == list(range(8))
    with Study.open(path) as s:
        n = s.query("SELECT COUNT(*) FROM suggestions")[0][0]
    assert n == 8


def test_a_pool_names_one_model_and_refuses_servers_of_different_models(server, pack_manifest):
    pool = RemotePool([_remote(server, pack_manifest), _remote(server + "/v1", pack_manifest)])
    assert pool.concurrent_requests and pool.model_id == f"remote:{ALIAS}"
    assert pool.label.endswith("and 1 more server")
    mixed = RemotePool([_remote(server, pack_manifest, model="a"),
                        _remote(server, pack_manifest, model="b")])
    with pytest.raises(InputError, match="serve different models"):
        mixed.model_id
    with pytest.raises(ValueError):
        RemotePool([])


def test_parallel_requests_need_a_runtime_that_takes_them(tiny_pack, longer_night, tmp_path):
    from sleepvlm_ws.core.model.runtime import LocalRuntime

    rec = Recording.open(longer_night)
    try:
        montage = auto_montage([c.label for c in rec.channels])
        with LocalRuntime(tiny_pack, n_threads=1) as local:
            with pytest.raises(ValueError, match="one request at a time"):
                ScoringRun(rec, montage, tmp_path / "x.sleepvlm", local, parallel=2)
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match="parallel"):
                ScoringRun(rec, montage, tmp_path / "x.sleepvlm", object(), parallel=bad)
    finally:
        rec.close()


def test_score_cli_through_a_server(server, tiny_pack, longer_night, tmp_path, monkeypatch, capsys):
    from sleepvlm_ws.cli import main

    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))
    study = tmp_path / "cli.sleepvlm"
    args = ["score", str(longer_night), "--model", str(tiny_pack), "--study", str(study),
            "--server", server, "--parallel", "2"]
    monkeypatch.delenv("SLEEPVLM_WS_API_KEY", raising=False)
    assert main(args) == 2                      # no key: the server refuses, one line
    err = capsys.readouterr().err.strip()
    assert "HTTP 401" in err and "\n" not in err and "Traceback" not in err

    monkeypatch.setenv("SLEEPVLM_WS_API_KEY", API_KEY)
    args[args.index(server)] = f"{server},{server}/v1"   # two servers of one model: a pool
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "8 suggestion(s) stored" in out
    assert sorted(_layer(study)) == list(range(8))
    assert main(args) == 0                      # nothing left to ask
    assert "0 suggestion(s) stored, 8 epoch(s) already scored" in capsys.readouterr().out

    assert main(["score", str(longer_night), "--model", str(tiny_pack), "--parallel", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--parallel is for --server" in err and "\n" not in err
    assert main(["score", str(longer_night), "--model", str(tiny_pack), "--no-grammar"]) == 2
    assert "--no-grammar is for --server" in capsys.readouterr().err
    assert main(["score", str(longer_night), "--server", "", "--model", str(tiny_pack)]) == 2
    assert "--server needs the server's address" in capsys.readouterr().err
    bad = tmp_path / "typo.sleepvlm"
    assert main(["score", str(longer_night), "--study", str(bad), "--server", "lab:8080"]) == 2
    assert "write it as http://lab:8080" in capsys.readouterr().err and not bad.exists()
    assert main(["score", str(longer_night), "--model", str(tiny_pack), "--server", " , "]) == 2
    assert "--server needs the server's address" in capsys.readouterr().err


class _CancelOnSecondRequest:
    """The runtime, counting the answers it hands back; the second request (from one of the
    run's request threads) presses Cancel, so requests are in flight when it comes."""

    concurrent_requests = True

    def __init__(self, runtime, cancel: threading.Event):
        self.runtime, self.cancel, self.model_id = runtime, cancel, runtime.model_id
        self.calls = self.answered = 0
        self._lock = threading.Lock()

    def suggest(self, images, *, rationale, max_tokens=None):
        with self._lock:
            self.calls += 1
            if self.calls == 2:
                self.cancel.set()
        answer = self.runtime.suggest(images, rationale=rationale, max_tokens=max_tokens)
        with self._lock:
            self.answered += 1
        return answer


def test_cancel_with_requests_in_flight_stores_them_and_resumes(server, pack_manifest,
                                                               longer_night, tmp_path):
    path = tmp_path / "c.sleepvlm"
    cancel = threading.Event()
    counting = _CancelOnSecondRequest(_remote(server, pack_manifest), cancel)
    rec = Recording.open(longer_night)
    try:
        montage = study_montage(rec, path, "amy")
        first = ScoringRun(rec, montage, path, counting, parallel=3).run(cancel_event=cancel)
        # every answer the server gave before and after Cancel was stored: none thrown away
        assert first.outcome == "cancelled" and 2 <= counting.answered < 8
        assert first.stored[FAST] == counting.answered == len(_layer(path))
        rest = ScoringRun(rec, montage, path, _remote(server, pack_manifest), parallel=3).run()
    finally:
        rec.close()
    assert rest.outcome == "completed" and rest.model_calls == 8 - first.stored[FAST]
    assert sorted(_layer(path)) == list(range(8))


def test_ctrl_c_keeps_the_answers_already_arrived(server, pack_manifest, longer_night, tmp_path):
    path = tmp_path / "i.sleepvlm"
    rec = Recording.open(longer_night)
    try:
        montage = study_montage(rec, path, "amy")

        def progress(done, total, eta):
            if done == 2:
                raise KeyboardInterrupt

        run = ScoringRun(rec, montage, path, _remote(server, pack_manifest), parallel=3)
        with pytest.raises(KeyboardInterrupt):
            run.run(progress=progress)
    finally:
        rec.close()
    assert run.summary.outcome == "interrupted"
    assert 2 <= len(_layer(path)) == run.summary.model_calls < 8
    with Study.open(path) as s:
        ends = [e for e in s.audit_events() if e.kind == "ai_run_finished"]
    assert ends and ends[-1].payload["outcome"] == "interrupted"
