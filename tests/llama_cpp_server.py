"""llama-cpp-python's own OpenAI-compatible server on a free loopback port, serving a model pack
(the real server the remote-runtime tests talk to; needs the package's server extras).

Test modules import the fixtures ``pack_manifest`` (the tiny pack, verified) and ``server``
(its URL; one server per module, API key ``API_KEY``, model name ``ALIAS``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

READY_WITHIN_S = 120
API_KEY = "test-key-not-secret"
ALIAS = "sleepvlm-tiny"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(base: str, api_key: str) -> bool:
    req = urllib.request.Request(f"{base}/v1/models",
                                 headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def serving(manifest, *, alias: str, api_key: str, log_dir: Path,
            threads: int = 1, logits_all: bool = False) -> Iterator[str]:
    """Start the server for ``manifest`` (a verified pack), yield its base URL, stop it.

    ``logits_all`` is llama-cpp-python's own setting, on by default there; off here unless a
    test is about token probabilities. With it, the server computes the logits of every prompt
    token (some 1,100 a request, each over the 152k-token vocabulary) and answers token
    probabilities; without it, it evaluates as llama.cpp's own server does and refuses a request
    for them (HTTP 500), which RemoteRuntime answers by asking once more without them."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = Path(log_dir) / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server",
           "--model", str(manifest.lm_path), "--model_alias", alias,
           "--clip_model_path", str(manifest.mmproj_path), "--chat_format", "mtmd",
           "--n_ctx", str(manifest.context_size), "--n_threads", str(threads),
           "--logits_all", str(bool(logits_all)),
           "--host", "127.0.0.1", "--port", str(port), "--api_key", api_key,
           "--verbose", "False"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while not _ready(base, api_key):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"llama-cpp-python server did not come up "
                            f"(exit {proc.poll()}):\n{tail}")
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
def pack_manifest(tiny_pack, tmp_path_factory):
    from sleepvlm_ws.core.model.model_pack import verify_pack

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLEEPVLM_WS_HOME", str(tmp_path_factory.mktemp("home")))
        return verify_pack(tiny_pack)


@pytest.fixture(scope="module")
def server(pack_manifest, tmp_path_factory):
    """The server for this module (one llama.cpp thread); killed at the end."""
    with serving(pack_manifest, alias=ALIAS, api_key=API_KEY, threads=1,
                 log_dir=tmp_path_factory.mktemp("server")) as base:
        yield base
