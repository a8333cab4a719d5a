"""A model served elsewhere: an OpenAI-compatible ``/v1/chat/completions`` endpoint
(llama-cpp-python's or llama.cpp's server, vLLM) used exactly like the local runtime.

``RemoteRuntime`` sends the same request the local runtime builds (``request.build_messages``:
the pack's system prompt, then the three labelled epoch images as PNG data URIs) with the same
decoding: temperature 0, top_p 0.8, no repetition penalty, a fixed seed, 128 new tokens for
the fast pass and 1024 with the rationale. The answer is read by ``answer.parse_answer``, so a
remote answer and a local one are stored alike.

The answer constraint goes the way the server understands it:

- ``grammar=True`` (default) puts the GBNF grammar (``grammar.answer_gbnf``, the local
  runtime's) in the body as ``grammar``: llama-cpp-python's and llama.cpp's servers apply it;
- ``response_format="json_object"`` also sends ``{"type": "json_object", "schema": ...}``
  (llama-cpp-python then builds its own grammar from the schema and uses that instead of
  ``grammar``); ``"json_schema"`` sends the OpenAI form vLLM reads.

The model's confidence: with ``logprobs=True`` (default) the body asks for ``logprobs`` and
``top_logprobs`` (``TOP_LOGPROBS``). Where the reply carries them (llama.cpp's server, vLLM),
the stage probabilities are read from them as the local runtime reads its logits
(``stage_confidence.distribution_from_logprobs``: renormalised over the listed tokens the grammar
allows; a branch not taken that leaves several stages open cannot be followed and is left
unresolved). Where it does not (our lab server), the probability is None: never made up.
llama-cpp-python's server (0.3.36, ``mtmd`` chat format) gives the top tokens of the raw logits,
before its grammar; where they name none of the stages the grammar allows (the tiny random test
model), the probability is None too. It sorts the whole vocabulary in Python for every new token
to find them, which costs a CPU server seconds per answer. A server
that refuses the request because of them (HTTP 400/422/500/501) is asked once more without
them, and this runtime stops asking. Only with the grammar: without it the answer is not the
grammar's and its probabilities would not be the ones the local runtime gives.

Only the standard library talks to the server (``urllib``); every request has a timeout, and
every failure becomes one line (``RemoteServerError``) naming the server.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterable

from ...errors import InputError
from .answer import parse_answer
from .grammar import answer_gbnf, answer_schema
from .model_pack import RENDERER_VERSION, RENDERERS, SLEEPVLM_RULE_IDS, verify_pack
from .request import EDGE_FLAG, EpochImages, build_messages
from .runtime import FAST_MAX_TOKENS, RATIONALE_MAX_TOKENS, SEED, TEMPERATURE, TOP_P, RuntimeAnswer
from .stage_confidence import distribution_from_logprobs, stage_rule_table

DEFAULT_TIMEOUT_S = 300.0
API_KEY_ENV = "SLEEPVLM_WS_API_KEY"   # where the CLI and the GUI read the servers' API key
MAX_PARALLEL = 256                    # requests in flight at most (CLI --parallel, GUI setting)
RESPONSE_FORMATS = (None, "json_object", "json_schema")
TOP_LOGPROBS = 20                     # alternatives per token asked for (OpenAI's maximum)
_MAX_ERROR_CHARS = 200

__all__ = ["RemoteRuntime", "RemotePool", "RemoteServerError", "DEFAULT_TIMEOUT_S", "API_KEY_ENV",
           "MAX_PARALLEL",
           "check_server_url", "parse_server_urls"]


class RemoteServerError(InputError):
    """The AI server cannot be reached, refuses the request, or answers something unreadable."""


class _Refused(RemoteServerError):
    """The server answered the request with an HTTP error status (``status``)."""

    def __init__(self, message: str, status: int):
        super().__init__(None, message)
        self.status = status


class RemoteRuntime:
    """A SleepVLM model behind an OpenAI-compatible server.

    ``base_url``: the server, e.g. ``http://127.0.0.1:8080`` (``/v1`` may be included).
    ``model``: the served model's name (default: the first one the server lists).
    ``system_prompt`` and ``rule_ids``: the model pack's prompt and rule vocabulary
    (``from_pack`` reads them from a pack). ``model_id``: the key its suggestions are stored
    under (default ``remote:<model name>``; give the pack's LM SHA-256 when the server is known
    to run that very file, so its suggestions and the local runtime's are one layer).
    ``renderer_version``: the pixels the served model was trained on (the pack's; the client
    renders the images it sends).
    """

    # ``suggest`` may be called from several threads at once (one HTTP request each): a server
    # with parallel slots batches them (ScoringRun's ``parallel``).
    concurrent_requests = True

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, *, system_prompt: str,
                 rule_ids: Iterable[str] = SLEEPVLM_RULE_IDS, grammar: bool = True,
                 response_format: str | None = None, model_id: str | None = None,
                 logprobs: bool = True, renderer_version: str = RENDERER_VERSION):
        self.base_url = check_server_url(base_url)
        if renderer_version not in RENDERERS:
            raise ValueError(f"unknown renderer {renderer_version!r}; one of {', '.join(RENDERERS)}")
        self.renderer_version = renderer_version
        if not isinstance(system_prompt, str) or not system_prompt.strip():
            raise ValueError("a system prompt is required (the model pack's prompt file)")
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}, "
                             f"not {response_format!r}")
        timeout = float(timeout)
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.model = model
        self.api_key = _check_api_key(api_key)
        self.timeout = timeout
        self.system_prompt = system_prompt
        self.rule_ids = tuple(rule_ids)
        self.use_grammar = bool(grammar)
        self.response_format = response_format
        self._model_id = model_id
        self._lock = threading.Lock()
        self._grammar = {coarse: answer_gbnf(coarse, self.rule_ids) for coarse in (True, False)}
        self._schema = {coarse: answer_schema(coarse, self.rule_ids) for coarse in (True, False)}
        self.logprobs = bool(logprobs)        # asked for; False once a server refused them
        self._stage_rules = stage_rule_table(self.rule_ids)

    @classmethod
    def from_pack(cls, base_url: str, pack_dir: str | Path, **kwargs) -> "RemoteRuntime":
        """Prompt and rule vocabulary from a verified model pack (weights served elsewhere)."""
        return cls(base_url, **_pack_prompt(pack_dir), **kwargs)

    # -- identity ------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """How the model is named to the user: ``name at server``."""
        return f"{self.model or 'model'} at {self.base_url}"

    @property
    def model_id(self) -> str:
        if self._model_id is None:
            self._model_id = f"remote:{self.served_model()}"
        return self._model_id

    def served_model(self, timeout: float | None = None) -> str:
        """The model name requests carry: as given, else the first the server lists (asked
        within ``timeout`` seconds, default the runtime's)."""
        with self._lock:
            if self.model is None:
                reply = self._call("GET", "models", None, timeout)
                try:
                    self.model = str(reply["data"][0]["id"])
                except (KeyError, IndexError, TypeError):
                    raise self._error("its model list is not an OpenAI model list") from None
            return self.model

    def models(self) -> list[str]:
        """Every model name the server lists (``GET /v1/models``)."""
        reply = self._call("GET", "models", None)
        try:
            return [str(m["id"]) for m in reply["data"]]
        except (KeyError, TypeError):
            raise self._error("its model list is not an OpenAI model list") from None

    # -- inference ----------------------------------------------------------------------
    def request_body(self, images: EpochImages, *, rationale: bool,
                     max_tokens: int | None = None) -> dict:
        """The JSON body ``suggest`` posts (kept separate so it can be inspected)."""
        coarse = not rationale
        body: dict = {
            "model": self.served_model(),
            "messages": build_messages(self.system_prompt, images),
            "temperature": TEMPERATURE,
            "top_p": TOP_P,
            "max_tokens": int(max_tokens or (RATIONALE_MAX_TOKENS if rationale
                                             else FAST_MAX_TOKENS)),
            "seed": SEED,
            "stream": False,
            # no repetition penalty: llama-cpp-python's server defaults to 1.1 (applied even
            # when greedy); vLLM calls it repetition_penalty
            "repeat_penalty": 1.0,
            "repetition_penalty": 1.0,
            # greedy decoding as a one-candidate cut: the same token as temperature 0, without the
            # server sorting the 152k-token vocabulary for every sequence at every step
            "top_k": 1,
        }
        if self.use_grammar:
            body["grammar"] = self._grammar[coarse]
        if self.logprobs and self.use_grammar:   # probabilities under the grammar only
            body["logprobs"] = True
            body["top_logprobs"] = TOP_LOGPROBS
        if self.response_format == "json_object":
            body["response_format"] = {"type": "json_object", "schema": self._schema[coarse]}
        elif self.response_format == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "sleepvlm_answer", "schema": self._schema[coarse], "strict": True}}
        return body

    def suggest(self, images: EpochImages, *, rationale: bool,
                max_tokens: int | None = None) -> RuntimeAnswer:
        """The model's answer for ``images.target`` (fast pass, or with ``rationale``)."""
        if not isinstance(images, EpochImages):
            raise TypeError("suggest() needs EpochImages")
        body = self.request_body(images, rationale=rationale, max_tokens=max_tokens)
        t0 = time.perf_counter()
        try:
            reply = self._call("POST", "chat/completions", body)
        except _Refused:
            if "logprobs" not in body:
                raise
            # e.g. llama-cpp-python's server without logits_all: ask again without them
            reply = self._call("POST", "chat/completions",
                               {k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")})
            self.logprobs = False
        seconds = time.perf_counter() - t0
        try:
            choice = reply["choices"][0]
            raw = choice["message"].get("content") or ""
            usage = reply.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise self._error("its reply is not an OpenAI chat completion") from None
        if not isinstance(raw, str):
            raise self._error("its reply is not an OpenAI chat completion")
        answer = parse_answer(raw, rules=self.rule_ids)
        if images.edge and EDGE_FLAG not in answer.flags:
            answer.flags.append(EDGE_FLAG)
        return RuntimeAnswer(answer=answer, raw=raw, prompt_tokens=prompt_tokens,
                             completion_tokens=completion_tokens, seconds=seconds,
                             finish_reason=str(choice.get("finish_reason") or ""),
                             confidence=self._confidence(choice, answer, "logprobs" in body))

    def _confidence(self, choice: dict, answer, asked: bool):
        """The stage probabilities from the reply's token logprobs (None: not given)."""
        logprobs = choice.get("logprobs") if asked else None
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not isinstance(content, list):
            return None
        return distribution_from_logprobs(content, self._stage_rules, answer.stage)

    def close(self) -> None:
        """Nothing is held open between requests."""

    def __enter__(self) -> "RemoteRuntime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- HTTP ---------------------------------------------------------------------------
    def _call(self, method: str, endpoint: str, body: dict | None,
              timeout: float | None = None) -> dict:
        url = f"{self.base_url}/v1/{endpoint}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        limit = timeout or self.timeout
        try:
            with urllib.request.urlopen(req, timeout=limit) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (TimeoutError, socket.timeout):
            raise self._error(f"no answer within {limit:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise self._error(f"no answer within {limit:g} s") from None
            why = getattr(reason, "strerror", None) or str(reason)
            raise self._error(f"cannot reach the AI server ({why})") from None
        except (ConnectionError, OSError) as exc:
            raise self._error(f"the connection failed ({exc.strerror or exc})") from None
        except http.client.HTTPException as exc:
            raise self._error(f"it does not answer like an HTTP server "
                              f"({type(exc).__name__})") from None
        except (ValueError, UnicodeError) as exc:
            raise self._error(f"the request could not be sent ({type(exc).__name__})") from None
        try:
            reply = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise self._error("its reply is not JSON") from None
        if not isinstance(reply, dict):
            raise self._error("its reply is not a JSON object")
        return reply

    def _http_error(self, exc: urllib.error.HTTPError) -> RemoteServerError:
        try:
            text = exc.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            text = ""
        detail = _error_detail(text)
        if exc.code in (401, 403):
            return self._error(f"the server refused the request (HTTP {exc.code}: check the "
                               f"API key){': ' + detail if detail else ''}")
        if exc.code in (400, 422, 500, 501):      # the body refused (e.g. its logprobs)
            return _Refused(f"{self.base_url}: the server answered HTTP {exc.code}"
                            f"{': ' + detail if detail else ''}", exc.code)
        return self._error(f"the server answered HTTP {exc.code}"
                           f"{': ' + detail if detail else ''}")

    def _error(self, problem: str) -> RemoteServerError:
        return RemoteServerError(None, f"{self.base_url}: {problem}")


class RemotePool:
    """Several servers running the same model, used as one: each request goes to the server
    with the fewest requests in flight (the first of those on a tie). A lab with more than one
    GPU, or more than one llama-server on one GPU (one's image encoding then overlaps the
    other's decoding), scores a night with ``ScoringRun(parallel=...)`` through a pool.
    Every server must list the same served model name; suggestions are stored under it."""

    concurrent_requests = True

    def __init__(self, runtimes: Iterable[RemoteRuntime]):
        self.runtimes = list(runtimes)
        if not self.runtimes:
            raise ValueError("a pool needs at least one server")
        if len({r.renderer_version for r in self.runtimes}) > 1:
            raise ValueError("the servers' models expect different renderers: give servers of "
                             "one model pack")
        self._busy = [0] * len(self.runtimes)
        self._lock = threading.Lock()

    @classmethod
    def from_pack(cls, base_urls: Iterable[str], pack_dir: str | Path, **kwargs) -> "RemotePool":
        prompt = _pack_prompt(pack_dir)
        return cls(RemoteRuntime(url, **prompt, **kwargs) for url in base_urls)

    @property
    def label(self) -> str:
        first = self.runtimes[0]
        more = len(self.runtimes) - 1
        return first.label + (f" and {more} more server{'s' * (more > 1)}" if more else "")

    @property
    def renderer_version(self) -> str:
        """The pixels the served model was trained on (every server: one pack)."""
        return self.runtimes[0].renderer_version

    @property
    def model_id(self) -> str:
        ids = {r.model_id for r in self.runtimes}
        if len(ids) > 1:
            raise InputError(None, "the servers serve different models: "
                                   + ", ".join(sorted(ids)) + "; give servers of one model")
        return ids.pop()

    def suggest(self, images: EpochImages, *, rationale: bool,
                max_tokens: int | None = None) -> RuntimeAnswer:
        with self._lock:
            i = min(range(len(self._busy)), key=self._busy.__getitem__)
            self._busy[i] += 1
        try:
            return self.runtimes[i].suggest(images, rationale=rationale, max_tokens=max_tokens)
        finally:
            with self._lock:
                self._busy[i] -= 1

    def close(self) -> None:
        for runtime in self.runtimes:
            runtime.close()


def _pack_prompt(pack_dir: str | Path) -> dict:
    """``system_prompt``, ``rule_ids`` and ``renderer_version`` of a verified model pack (its
    weights served elsewhere)."""
    manifest = verify_pack(pack_dir)
    return {"system_prompt": manifest.system_prompt(), "rule_ids": manifest.rule_vocabulary,
            "renderer_version": manifest.renderer_version}


def parse_server_urls(text: object) -> list[str]:
    """The server addresses in ``text``, each checked and written as ``RemoteRuntime`` uses it.

    Parameters
    ----------
    text : str
        Addresses separated by commas or white space, e.g.
        ``"http://gpu1:8080, https://gpu2.lab/v1"``.

    Returns
    -------
    list of str
        Each address without a trailing ``/`` or ``/v1``, in the order given, duplicates dropped;
        [] when ``text`` holds none.

    Raises
    ------
    RemoteServerError
        One line naming the first malformed address (not http(s), with a user name or password,
        a query or a fragment), or when ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise RemoteServerError(None, "the server addresses must be text")
    urls: list[str] = []
    for word in re.split(r"[,\s]+", text.strip()):
        if word:
            url = check_server_url(word)
            if url not in urls:
                urls.append(url)
    return urls


def check_server_url(base_url: object) -> str:
    """``base_url`` as requests use it (no trailing ``/`` or ``/v1``); a RemoteServerError
    (one line, never repeating a password or query it held) when it is not a plain http(s)
    server address."""
    if not isinstance(base_url, str) or not base_url.strip():
        raise RemoteServerError(None, "no AI server address given")
    url = base_url.strip().rstrip("/")
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port                                    # ValueError when not a number
        if host:
            host.encode("idna")
    except (ValueError, UnicodeError):
        parts, host = None, None
    if "@" in url:
        raise RemoteServerError(None, "a server address takes no user name or password "
                                      "(give the API key separately)")
    shown = url.split("?")[0].split("#")[0]
    if parts is None or parts.scheme not in ("http", "https") or not host:
        hint = "" if "://" in url or parts is None else f" (write it as http://{shown})"
        raise RemoteServerError(None, f"{shown}: not an http(s) server address{hint}")
    if parts.query or parts.fragment:
        raise RemoteServerError(None, f"{shown}: a server address takes no query or fragment")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def _check_api_key(api_key: object) -> str | None:
    """The API key as sent (surrounding whitespace dropped; empty: none); an InputError that
    never repeats the key when it cannot go in an HTTP header."""
    if api_key is None:
        return None
    if not isinstance(api_key, str):
        raise RemoteServerError(None, "the API key must be text")
    key = api_key.strip()
    if key and not all(33 <= ord(c) < 127 for c in key):
        raise RemoteServerError(None, "the API key holds a space, a control character or a "
                                      f"non-ASCII character (check ${API_KEY_ENV})")
    return key or None


def _error_detail(text: str) -> str:
    """The useful part of an error body (OpenAI ``error.message`` or FastAPI ``detail``)."""
    detail: object = text
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            detail = err["message"]
        elif isinstance(err, str):
            detail = err
        elif data.get("detail"):
            detail = data["detail"]
        elif data.get("message"):
            detail = data["message"]
    line = " ".join(str(detail).split())
    return line if len(line) <= _MAX_ERROR_CHARS else line[:_MAX_ERROR_CHARS] + "\u2026"
