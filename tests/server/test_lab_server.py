"""`sleepvlm-ws serve`: the batched engine (core.server.batch_engine) behind the OpenAI-compatible
front (core.server.lab_server), run for real on the tiny pack with llama.cpp on the CPU, and driven by
the workstation's own client (RemoteRuntime, ScoringRun, `score --server`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from llama_cpp_server import API_KEY, free_port  # noqa: E402

from sleepvlm_ws.core.base.stages import Stage
from sleepvlm_ws.core.model.model_pack import verify_pack
from sleepvlm_ws.core.model.remote import RemoteRuntime, RemoteServerError
from sleepvlm_ws.core.model.request import build_messages
from sleepvlm_ws.core.model.runtime import LocalRuntime
from sleepvlm_ws.core.pipeline.scoring_run import EpochImageCache
from sleepvlm_ws.core.server.batch_engine import BatchEngine, EngineError
from sleepvlm_ws.core.server.engine_request import PreparedRequest
from sleepvlm_ws.core.server.lab_server import LabServer
from sleepvlm_ws.core.signals.montage import auto_montage
from sleepvlm_ws.core.signals.recording import Recording
from sleepvlm_ws.core.signals.render import RENDERER_VERSION
from sleepvlm_ws.core.study.study import Study
from sleepvlm_ws.core.study.suggestions import SuggestionKey, SuggestionStore
from sleepvlm_ws.core.synth.night import generate_night, write_night_edf

ALIAS = "tiny-batched"
RATIONALE_TOKENS = 48


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lab-night")
    stages = [Stage.W, Stage.N1, Stage.N2, Stage.N2, Stage.N3, Stage.R]
    return write_night_edf(generate_night(seed=21, fs=100.0, stages=stages), folder / "n.edf")


@pytest.fixture(scope="module")
def requests_(night):
    """The request images of every epoch of the night (edges included)."""
    rec = Recording.open(night)
    try:
        cache = EpochImageCache(rec, auto_montage([c.label for c in rec.channels]))
        return [cache.request_images(e, rec.n_epochs) for e in range(rec.n_epochs)]
    finally:
        rec.close()


@pytest.fixture(scope="module")
def engine(tiny_pack):
    with BatchEngine(tiny_pack, slots=3, n_threads=1) as eng:
        yield eng


@pytest.fixture(scope="module")
def lab(engine):
    server = LabServer(engine, "127.0.0.1", 0, alias=ALIAS, api_key=API_KEY)
    server.serve_in_thread()
    yield server
    server.close()


def _remote(url, tiny_pack, **kwargs) -> RemoteRuntime:
    kwargs.setdefault("api_key", API_KEY)
    return RemoteRuntime.from_pack(url, tiny_pack, timeout=120, **kwargs)


def _call(lab, method, path, body=None, key=API_KEY, raw=None):
    """(status, JSON reply) of one HTTP request to the lab server."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(lab.url + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _prompt_and_grammar(tiny_pack, rationale=True):
    with LocalRuntime(tiny_pack, n_threads=1) as rt:
        return rt.system_prompt, rt.grammar_text(rationale=rationale)


def test_parallel_answers_are_the_in_process_answers(lab, engine, tiny_pack, requests_):
    """Several requests decoded together give, token for token, what the in-process runtime
    gives one at a time (same greedy decoding, same grammar); each image is encoded once."""
    with LocalRuntime(tiny_pack, n_threads=1) as local:
        here = [local.suggest(r, rationale=True, max_tokens=RATIONALE_TOKENS) for r in requests_]
    expected = [(a.raw, a.finish_reason) for a in here]
    before = engine.stats()
    remote = _remote(lab.url, tiny_pack)
    assert remote.models() == [ALIAS]
    with ThreadPoolExecutor(max_workers=len(requests_)) as pool:
        got = list(pool.map(lambda r: remote.suggest(r, rationale=True,
                                                     max_tokens=RATIONALE_TOKENS), requests_))
    assert [(g.raw, g.finish_reason) for g in got] == expected
    assert all(g.raw and 0 < g.completion_tokens <= RATIONALE_TOKENS for g in got)
    assert got[0].answer.flags.count("edge_epoch") == 1 and "edge_epoch" not in got[2].answer.flags
    after = engine.stats()
    n = len(requests_)
    encoded = after["images_encoded"] - before["images_encoded"]
    reused = after["images_reused"] - before["images_reused"]
    assert encoded + reused == 3 * n and encoded <= n + 2     # each epoch image about once
    assert after["prefix_copies"] - before["prefix_copies"] == n
    assert after["requests"] - before["requests"] == n and after["active"] == 0


def test_the_http_front_refuses_what_it_cannot_do_in_one_line(lab, tiny_pack, requests_):
    def call(*args, **kwargs):
        return _call(lab, *args, **kwargs)

    assert call("GET", "/health", key=None) == (200, {"status": "ok"})
    status, models = call("GET", "/v1/models")
    assert status == 200 and models["data"][0]["id"] == ALIAS
    assert models["data"][0]["sleepvlm_model_id"] == verify_pack(tiny_pack).files["lm"].sha256
    assert call("GET", "/v1/models", key=None)[0] == 401
    assert call("GET", "/v1/models", key="wrong")[0] == 401
    assert call("GET", "/nothing")[0] == 404

    body = _remote(lab.url, tiny_pack).request_body(requests_[1], rationale=False)
    for change, words in (({"temperature": 0.7, "top_k": 40}, "decodes greedily"),
                          ({"stream": True}, "streaming"),
                          ({"n": 2}, "one choice"),
                          ({"messages": []}, "messages"),
                          ({"max_tokens": 0}, "max_tokens"),
                          ({"repeat_penalty": 1.1}, "repeat_penalty"),
                          ({"response_format": {"type": "json_object"}}, "GBNF")):
        status, reply = call("POST", "/v1/chat/completions", dict(body, **change))
        message = reply["error"]["message"]
        assert status == 400 and words in message and "\n" not in message, (change, message)
    status, reply = call("POST", "/v1/chat/completions", raw=b"{not json")
    assert status == 400 and reply["error"]["message"] == "the body is not JSON"
    for url, words in (("data:image/png;base64,AAAA", "could not be decoded"),
                       ("data:x", "must be inline"),
                       ("data:image/png;base64,***", "base64 is invalid"),
                       ("file:///etc/passwd", "must be inline"),         # never read or fetched
                       ("http://127.0.0.1:9/x.png", "must be inline")):
        bad = json.loads(json.dumps(body))
        bad["messages"][1]["content"][1]["image_url"]["url"] = url
        status, reply = call("POST", "/v1/chat/completions", bad)
        assert status == 400 and words in reply["error"]["message"], (url, reply)
    broken = json.loads(json.dumps(body))
    broken["messages"][1]["content"][1]["image_url"] = 42                 # not an object
    status, reply = call("POST", "/v1/chat/completions", broken)
    assert status == 400 and "\n" not in reply["error"]["message"]
    status, reply = call("POST", "/v1/chat/completions", dict(body, grammar='root ::= "a'))
    assert status == 400 and reply["error"]["message"].startswith("the grammar is unusable")
    # the client reads a refusal as one line naming the server
    with pytest.raises(RemoteServerError, match="HTTP 401"):
        _remote(lab.url, tiny_pack, api_key="wrong").suggest(requests_[1], rationale=False)
    # an error closes a kept-alive connection (its unread body must not become a request)
    import http.client

    conn = http.client.HTTPConnection(lab.url.split("//")[1], timeout=30)
    conn.request("POST", "/v1/chat/completions", body=b"{}", headers={"Authorization": "Bearer x"})
    reply = conn.getresponse()
    assert reply.status == 401 and reply.getheader("Connection") == "close"
    conn.close()
    # and the engine still answers afterwards
    assert _remote(lab.url, tiny_pack).suggest(requests_[1], rationale=False).answer.stage


def test_a_text_only_request_does_not_take_the_shared_prefix(engine, tiny_pack, requests_):
    prompt, _ = _prompt_and_grammar(tiny_pack)
    messages = [{"role": "system", "content": prompt}, {"role": "user", "content": "hi"}]
    for _ in range(2):                         # twice: the same whole prompt again
        result = engine.submit(engine.prepare(messages, max_tokens=5, grammar=None)).wait(60)
        assert result["completion_tokens"] >= 1 and result["finish_reason"] in ("stop", "length")
    before = engine.stats()["prefix_copies"]
    engine.submit(engine.prepare(build_messages(prompt, requests_[2]), max_tokens=5,
                                 grammar=None)).wait(60)
    assert engine.stats()["prefix_copies"] == before + 1


def test_gpu_style_sampling_picks_the_same_tokens_and_refuses_a_grammar(tiny_pack, engine,
                                                                       requests_):
    """llama.cpp's backend sampler (the GPU path; it runs on the CPU backend too) chooses the
    tokens the host's argmax chooses; it cannot apply a grammar, so a request with one is
    refused rather than answered unconstrained."""
    prompt, grammar = _prompt_and_grammar(tiny_pack)
    messages = [build_messages(prompt, r) for r in requests_[1:4]]
    prepared = [engine.prepare(m, max_tokens=RATIONALE_TOKENS, grammar=None) for m in messages]
    before = engine.stats()["prefill_groups"]
    host = [engine.submit(p) for p in prepared]           # arrive together: prefilled together
    host = [p.wait(120)["content"] for p in host]
    assert engine.stats()["prefill_groups"] - before < len(messages)
    with BatchEngine(tiny_pack, slots=3, n_threads=1, gpu_sampling=True) as gs:
        with pytest.raises(EngineError, match="no grammar"):
            gs.prepare(messages[0], max_tokens=8, grammar=grammar)
        got = [gs.submit(gs.prepare(m, max_tokens=RATIONALE_TOKENS, grammar=None))
               for m in messages]
        assert [p.wait(120)["content"] for p in got] == host


def test_a_shared_kv_buffer_answers_like_the_in_process_runtime(tiny_pack, requests_):
    """One KV buffer for all slots (the prompt's cells shared, not copied): one request at a
    time its cells sit where the in-process runtime's do, so the tokens are the same; several
    at once still complete under the grammar (their rounding may differ)."""
    prompt, grammar = _prompt_and_grammar(tiny_pack, rationale=False)
    with LocalRuntime(tiny_pack, n_threads=1, use_grammar=False) as local:
        expected = [local.suggest(r, rationale=True, max_tokens=RATIONALE_TOKENS).raw
                    for r in requests_[1:4]]
    with BatchEngine(tiny_pack, slots=4, n_threads=1, unified_kv=True) as eng:
        one_by_one = [eng.submit(eng.prepare(build_messages(prompt, r), max_tokens=RATIONALE_TOKENS,
                                             grammar=None)).wait(120)["content"]
                      for r in requests_[1:4]]
        pending = [eng.submit(eng.prepare(build_messages(prompt, r), max_tokens=64,
                                          grammar=grammar)) for r in requests_]
        results = [p.wait(120) for p in pending]
        assert eng.stats()["unified_kv"] is True
    assert one_by_one == expected
    for r in results:   # the grammar holds, so every answer is a complete coarse answer
        answer = json.loads(r["content"])
        assert answer["sleep_stage"] in {"W", "N1", "N2", "N3", "R"} and r["finish_reason"] == "stop"


def test_closing_answers_every_waiting_request(tiny_pack, requests_):
    prompt, _ = _prompt_and_grammar(tiny_pack)
    eng = BatchEngine(tiny_pack, slots=1, n_threads=1)
    pending = [eng.submit(eng.prepare(build_messages(prompt, r), max_tokens=200, grammar=None))
               for r in requests_[:4]]
    time.sleep(0.5)
    eng.close()
    outcomes = []
    for p in pending:
        try:
            p.wait(30)
            outcomes.append("answered")
        except EngineError as exc:
            outcomes.append(str(exc))
    assert "the server is shutting down" in outcomes          # the queued ones
    assert set(outcomes) <= {"answered", "the server is shutting down"}
    with pytest.raises(EngineError, match="shutting down"):   # the model is gone: refused
        eng.prepare(build_messages(prompt, requests_[1]), max_tokens=5, grammar=None)
    late = eng.submit(PreparedRequest(chunks=[], prompt_cells=0, max_tokens=1, grammar=None))
    with pytest.raises(EngineError, match="shutting down"):
        late.wait(5)


def _serve(tiny_pack, port, home, *extra):
    env = dict(os.environ, SLEEPVLM_WS_API_KEY=API_KEY, SLEEPVLM_WS_HOME=str(home))
    cmd = [sys.executable, "-c", "import sys; from sleepvlm_ws.cli import main; "
           "sys.exit(main(sys.argv[1:]))", "serve", "--model", str(tiny_pack), "--port", str(port),
           "--threads", "1", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(url, proc, within_s=120):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("serve did not become ready")


def test_score_cli_through_sleepvlm_ws_serve(tiny_pack, night, tmp_path, monkeypatch, capsys):
    from sleepvlm_ws.cli import main

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(tiny_pack, port, tmp_path / "home", "--slots", "2", "--alias", ALIAS)
    try:
        _wait_ready(url, proc)
        # a second server on the same port: one line, before any model is loaded
        second = _serve(tiny_pack, port, tmp_path / "home")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2 and err.count("\n") == 1
        assert f"cannot listen on 127.0.0.1:{port}" in err

        monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("SLEEPVLM_WS_API_KEY", API_KEY)
        study = tmp_path / "served.sleepvlm"
        args = ["score", str(night), "--model", str(tiny_pack), "--study", str(study),
                "--server", url, "--parallel", "2"]
        assert main(args) == 0
        assert "6 suggestion(s) stored" in capsys.readouterr().out
        with Study.open(study) as s:
            assert s.verify().ok
            layer = SuggestionStore(s).all_for(SuggestionKey(f"remote:{ALIAS}", RENDERER_VERSION))
        assert sorted(layer) == list(range(6)) and all(x.stage is not None for x in layer.values())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("extra, words", [
    (["--slots", "0"], "must be 1 or more"),
    (["--slots", "300"], "at most 255"),
    (["--port", "70000"], "a port is 0 to 65535"),
    (["--host", "0.0.0.0"], "needs an API key"),
])
def test_serve_refuses_bad_settings_in_one_line(tiny_pack, extra, words, monkeypatch, capsys):
    from sleepvlm_ws.cli import main

    monkeypatch.delenv("SLEEPVLM_WS_API_KEY", raising=False)
    assert main(["serve", "--model", str(tiny_pack), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "Traceback" not in err


def test_serve_names_a_missing_pack(tmp_path, capsys):
    from sleepvlm_ws.cli import main

    missing = tmp_path / "no-such-pack"
    assert main(["serve", "--model", str(missing), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and "\n" not in err
