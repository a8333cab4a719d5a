"""RemoteRuntime against a real OpenAI-compatible server: llama-cpp-python's own, on loopback,
serving the tiny model pack (needs the server extras: fastapi, uvicorn, sse-starlette,
starlette-context, pydantic-settings)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from sleepvlm_ws.core.model_pack import verify_pack
from sleepvlm_ws.core.montage import auto_montage
from sleepvlm_ws.core.recording import Recording
from sleepvlm_ws.core.remote import RemoteRuntime, RemoteServerError
from sleepvlm_ws.core.render import RENDERER_VERSION
from sleepvlm_ws.core.request import blank_epoch_png, request_images
from sleepvlm_ws.core.scoring_run import EpochImageCache, ScoringRun
from sleepvlm_ws.core.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.study import Study
from sleepvlm_ws.core.suggestions import FAST, SuggestionStore
from sleepvlm_ws.core.synth.night import generate_night, write_night_edf

pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server extras are missing")

API_KEY = "test-key-not-secret"
ALIAS = "sleepvlm-tiny"
READY_WITHIN_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(base: str) -> bool:
    req = urllib.request.Request(f"{base}/v1/models",
                                 headers={"Authorization": f"Bearer {API_KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def pack_manifest(tiny_pack, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLEEPVLM_WS_HOME", str(tmp_path_factory.mktemp("home")))
        return verify_pack(tiny_pack)


@pytest.fixture(scope="module")
def server(pack_manifest, tmp_path_factory):
    """llama-cpp-python's server on a free loopback port; killed at the end."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server",
           "--model", str(pack_manifest.lm_path), "--model_alias", ALIAS,
           "--clip_model_path", str(pack_manifest.mmproj_path), "--chat_format", "mtmd",
           "--n_ctx", str(pack_manifest.context_size), "--n_threads", "2",
           "--host", "127.0.0.1", "--port", str(port), "--api_key", API_KEY,
           "--verbose", "False"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while not _ready(base):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"llama-cpp-python server did not come up (exit {proc.poll()}):\n{tail}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    folder = tmp_path_factory.mktemp("night")
    stages = [Stage.W, Stage.N2, Stage.N3]
    return write_night_edf(generate_night(seed=11, fs=100.0, stages=stages), folder / "n.edf")


def _remote(server, manifest, **kwargs) -> RemoteRuntime:
    kwargs.setdefault("api_key", API_KEY)
    return RemoteRuntime(server, system_prompt=manifest.system_prompt(),
                         rule_ids=manifest.rule_vocabulary, timeout=120, **kwargs)


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
    from sleepvlm_ws.core.runtime import LocalRuntime

    with LocalRuntime(tiny_pack, n_threads=2, keep_prompt_cache=False) as local:
        here = local.suggest(images, rationale=False)
    assert json.loads(got.raw) == json.loads(here.raw)


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
    montage = auto_montage([c.label for c in rec.channels])
    Study.create(study_path, recording_path=rec.path, n_epochs=rec.n_epochs, montage=montage,
                 scorer="amy").close()
    summary = ScoringRun(rec, montage, study_path, _remote(server, pack_manifest),
                         epochs=[0, 2]).run()
    rec.close()
    assert summary.outcome == "completed" and summary.stored[FAST] == 2
    with Study.open(study_path) as s:
        layer = SuggestionStore(s).all_for(f"remote:{ALIAS}", RENDERER_VERSION)
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
    closed = RemoteRuntime(f"http://127.0.0.1:{_free_port()}", model="m", system_prompt=prompt,
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
