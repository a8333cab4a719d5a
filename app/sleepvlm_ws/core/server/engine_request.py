"""What a client of the batch engine holds: a prepared (tokenised) request, the handle it waits
on for the answer, and the one-line error the engine answers with."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ..model.mtmd_prompt import Piece, inline_image, tokenize_prompt

__all__ = ["EngineError", "PreparedRequest", "RequestHandle", "SHUTTING_DOWN", "prepare_request", "SlotSequence"]


class EngineError(Exception):
    """A request the engine cannot serve (the message is one line for the client); ``status``
    is the HTTP status it maps to: 400 the request's fault, 500 the engine's, 503 shutting down."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


SHUTTING_DOWN = "the server is shutting down"
@dataclass
class PreparedRequest:
    """A tokenised request, ready for ``BatchEngine.submit``."""

    chunks: list[Piece]
    prompt_cells: int
    max_tokens: int
    grammar: str | None
    _mtmd_chunks: object = None  # freed by the engine when the request is done


class RequestHandle:
    """A submitted request; ``wait()`` returns the result dict or raises EngineError."""

    def __init__(self, prepared: PreparedRequest, engine_thread: threading.Thread | None = None):
        self.prepared = prepared
        self._engine_thread = engine_thread
        self._done = threading.Event()
        self.result: dict | None = None
        self.error: EngineError | None = None

    def finish(self, result: dict | None = None, error: str | None = None,
               status: int = 500) -> None:
        self.result = result
        self.error = None if error is None else EngineError(
            error, 503 if error == SHUTTING_DOWN else status)
        self._done.set()

    def wait(self, timeout: float | None = None) -> dict:
        """The result; never waits on an engine thread that has stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.wait(1.0 if deadline is None else
                                  max(0.0, min(1.0, deadline - time.monotonic()))):
            if self._engine_thread is not None and not self._engine_thread.is_alive():
                if not self._done.is_set():
                    raise EngineError("the engine stopped", 500)
            if deadline is not None and time.monotonic() >= deadline:
                raise EngineError("the engine did not answer in time", 500)
        if self.error is not None:
            raise self.error
        return self.result


def prepare_request(handler, llama, messages: list[dict], *, max_tokens: int, grammar: str | None,
                    ctx_per_slot: int, n_batch: int) -> PreparedRequest:
    """OpenAI chat messages -> the tokenised request: the GGUF's chat template (``handler``, a
    ``kv_handler.PromptKVChatHandler`` on ``llama``), then libmtmd's tokeniser. Images must be
    inline (``data:image/...;base64,...``): the server fetches nothing. Raises EngineError
    (one line) for messages it cannot read and requests no slot can hold."""
    try:
        text, urls = handler.render_prompt(llama, messages)
    except Exception as exc:  # noqa: BLE001 - jinja, KeyError, TypeError on odd messages
        raise EngineError(f"the messages cannot be read ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:120]})") from None
    mtmd, mctx = handler._mtmd_cpp, handler.mtmd_ctx
    try:
        images = [inline_image(url) for url in urls]
        chunks, out = tokenize_prompt(mtmd, mctx, text, images)
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    big = max((c.n_tokens for c in out if c.kind == "image"), default=0)
    cells = sum(c.n_tokens for c in out)
    problem = ("the request is empty" if not out else
               f"the request needs {cells} tokens but a slot holds {ctx_per_slot}"
               if cells >= ctx_per_slot else
               f"an image of {big} tokens exceeds the server's batch of {n_batch}"
               if big > n_batch else None)
    if problem:
        mtmd.mtmd_input_chunks_free(chunks)
        raise EngineError(problem)
    budget = max(1, min(int(max_tokens), ctx_per_slot - cells))
    return PreparedRequest(out, cells, budget, grammar, chunks)


class SlotSequence:
    """One slot's sequence in the batch engine: the request it serves and where it stands."""

    def __init__(self, seq_id: int):
        self.seq_id = seq_id
        self.pending: RequestHandle | None = None
        self.next_chunk = 0
        self.n_past = 0
        self.tokens: list[int] = []
        self.last = -1
        self.guide = None
        self.t0 = 0.0
