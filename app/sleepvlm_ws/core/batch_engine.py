"""Many SleepVLM requests decoded together in one llama.cpp context (the lab server's engine).

llama.cpp's own server (``llama-server``) decodes its slots together, but for every request it
runs the vision encoder on all three epoch images (each epoch image is encoded three times a
night: as N+1, N and N-1) and decodes each image's embeddings as a batch of its own, while
every other sequence waits. ``BatchEngine`` does the same work with less of that:

- One context, ``slots`` sequences, each with a KV buffer of its own (``kv_unified=False``: a
  sequence attends to its own cells only). Sequence 0 holds the shared prompt prefix (the
  system prompt up to the first image, evaluated once); a new request's sequence starts as a
  copy of it (``llama_memory_seq_cp``: a device-side buffer copy, no recomputation). llama.cpp
  puts only sequences with consecutive ids in one micro-batch, so free slots are handed out
  lowest id first to keep the generating ones together. ``unified_kv=True`` puts all
  sequences in one buffer where they share the prefix's cells instead of copying them: less
  memory, but each token's attention then runs over every sequence's cells (measured slower
  on the H100: docs/BENCHMARKS.md) and its rounding differs from the in-process runtime's.
- Image embeddings are kept (an LRU keyed by the PNG's SHA-256, as ``kv_handler`` does in
  process): each epoch image goes through the vision encoder once, not three times.
- Requests that arrive together are prefilled together: chunk k of every new request goes in
  one ``llama_decode`` (all their text pieces in one token batch, all their image embeddings in
  one embedding batch with each image's own M-RoPE positions), not one decode per image.
- Every generating sequence advances one token per decode step (continuous batching: a
  finished sequence's slot takes the next request at once). Decoding is greedy (the
  workstation's decoding), the best token picked on the host from each sequence's logits, or
  on the GPU (``gpu_sampling``: llama.cpp's backend sampler, only token ids come back; a
  grammar then cannot be applied and a request carrying one is refused). On the host an answer
  grammar is applied as ``greedy_decode`` does: the best token first, the full grammar pass
  only when the grammar rejects it.

``submit(prepared)`` is thread-safe and returns a ``Pending`` to wait on; ``prepare`` turns
OpenAI chat messages into the tokenised request (chat template of the GGUF, libmtmd
tokeniser) and may run in the caller's thread. ``stats()`` says where the time went.
Answers are the same tokens the in-process runtime would choose, up to floating-point rounding
that depends on how many sequences share a decode.

Internals used (llama-cpp-python 0.3.36): ``llama_init_from_model`` with ``n_seq_max``,
``kv_unified`` and backend sampler configs, ``llama_batch_init``/``llama_decode``,
``llama_memory_seq_rm``/``seq_cp``, ``llama_get_logits_ith``, ``llama_get_sampled_token_ith``;
libmtmd ``mtmd_tokenize``, ``mtmd_encode_chunk``, ``mtmd_get_output_embd``,
``mtmd_image_tokens_get_decoder_pos``.
"""

from __future__ import annotations

import ctypes
import os
import queue
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelPackError
from .model_pack import verify_pack
from .mtmd_prompt import EmbeddingCache, Piece, encode_image, inline_image, tokenize_prompt

MAX_SLOTS = 255                 # llama.cpp's LLAMA_MAX_SEQ is 256; sequence 0 holds the prefix
IMAGE_CACHE_PER_SLOT = 4        # kept embeddings: enough for every slot's three images and more

__all__ = ["BatchEngine", "EngineError", "Pending", "Prepared", "MAX_SLOTS"]

_LOG_WARN, _LOG_CONT = 3, 5     # ggml_log_level
_mtmd_log = None                # the ctypes callback (kept alive for the process)


def _quiet_mtmd(mtmd, llama_cpp) -> None:
    """libmtmd logs every tokenised piece and every encoded image at INFO/DEBUG level; keep
    only its warnings and errors (on stderr)."""
    global _mtmd_log
    if _mtmd_log is None:
        def _log(level, text, _user):
            if level >= _LOG_WARN and level != _LOG_CONT and text:
                sys.stderr.write(text.decode("utf-8", "replace"))
        _mtmd_log = llama_cpp.llama_log_callback(_log)
    mtmd.mtmd_log_set(_mtmd_log, None)
    mtmd.mtmd_helper_log_set(_mtmd_log, None)


class EngineError(Exception):
    """A request the engine cannot serve (the message is one line for the client); ``status``
    is the HTTP status it maps to: 400 the request's fault, 500 the engine's, 503 shutting down."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


SHUTTING_DOWN = "the server is shutting down"
MAX_GRAMMARS = 8                # distinct answer grammars whose parsed samplers are kept


@dataclass
class Prepared:
    """A tokenised request, ready for ``BatchEngine.submit``."""

    chunks: list[Piece]
    prompt_cells: int
    max_tokens: int
    grammar: str | None
    _mtmd_chunks: object = None  # freed by the engine when the request is done


class Pending:
    """A submitted request; ``wait()`` returns the result dict or raises EngineError."""

    def __init__(self, prepared: Prepared, engine_thread: threading.Thread | None = None):
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


class _Seq:
    """One slot's sequence: the request it serves and where it stands."""

    def __init__(self, seq_id: int):
        self.seq_id = seq_id
        self.pending: Pending | None = None
        self.next_chunk = 0
        self.n_past = 0
        self.tokens: list[int] = []
        self.last = -1
        self.guide = None
        self.t0 = 0.0


class BatchEngine:
    """A model pack loaded once, serving up to ``slots`` requests at a time."""

    def __init__(self, pack_dir: str | Path, *, slots: int = 8, ctx_per_slot: int | None = None,
                 n_gpu_layers: int = 0, n_threads: int | None = None, gpu_sampling: bool = False,
                 n_batch: int = 2048, n_ubatch: int = 512, image_cache_size: int | None = None,
                 unified_kv: bool = False):
        slots = int(slots)
        if not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be 1 to {MAX_SLOTS}")
        self.manifest = verify_pack(pack_dir)
        self.model_id = self.manifest.files["lm"].sha256
        self.slots = slots
        self.ctx_per_slot = int(ctx_per_slot or self.manifest.context_size)
        self.gpu_sampling = bool(gpu_sampling)
        self.n_batch = max(64, slots, int(n_batch))    # a decode step holds one token a slot
        self._image_cache_size = (IMAGE_CACHE_PER_SLOT * slots if image_cache_size is None
                                  else max(0, int(image_cache_size)))
        try:
            import llama_cpp
            from llama_cpp import Llama

            from .kv_handler import PromptKVChatHandler
        except ImportError as exc:
            raise ModelPackError(None, f"llama-cpp-python is not installed or broken ({exc})") from None
        self._lc = llama_cpp
        threads = max(1, int(n_threads or os.cpu_count() or 1))
        try:
            self._handler = PromptKVChatHandler(str(self.manifest.mmproj_path), keep_prefix=False,
                                                image_cache_size=0, use_gpu=n_gpu_layers != 0)
            # the Llama object owns the weights, the vocabulary and the chat template; its own
            # context is kept minimal, the engine decodes in a context of its own
            self._llama = Llama(model_path=str(self.manifest.lm_path), chat_handler=self._handler,
                                n_ctx=256, n_batch=64, n_ubatch=64, n_threads=threads,
                                n_threads_batch=threads, n_gpu_layers=int(n_gpu_layers),
                                flash_attn=True, verbose=False)
            self._handler._init_mtmd_context(self._llama)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelPackError(self.manifest.lm_path, f"llama.cpp could not load the model: {exc}") from None
        self._mtmd = self._handler._mtmd_cpp
        _quiet_mtmd(self._mtmd, llama_cpp)
        self._mctx = self._handler.mtmd_ctx
        self._vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        self.n_vocab = int(self._llama.n_vocab())
        self.n_embd = int(llama_cpp.llama_model_n_embd_inp(self._llama.model))
        self._mrope = bool(self._mtmd.mtmd_decode_use_mrope(self._mctx))

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.ctx_per_slot * (slots + 1)
        params.n_batch = self.n_batch
        params.n_ubatch = min(int(n_ubatch), self.n_batch)
        params.n_seq_max = slots + 1
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.kv_unified = bool(unified_kv)
        self.unified_kv = bool(unified_kv)
        params.no_perf = True
        self._chains = []
        if self.gpu_sampling:
            configs = (llama_cpp.llama_sampler_seq_config * slots)()
            for i in range(slots):
                chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
                self._chains.append(chain)
                configs[i].seq_id = i + 1
                configs[i].sampler = ctypes.cast(chain, ctypes.c_void_p)
            params.samplers = configs
            params.n_samplers = slots
            self._configs = configs      # kept alive as long as the context
        self._ctx = llama_cpp.llama_init_from_model(self._llama.model, params)
        if not self._ctx:
            self._free_chains()
            self._llama.close()
            raise ModelPackError(self.manifest.lm_path, "llama.cpp could not create the batch "
                                 f"context ({slots} slots x {self.ctx_per_slot} tokens)")
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)

        self._prefix: list[int] | None = None
        self._embeddings = EmbeddingCache(self._image_cache_size)
        self._guides: OrderedDict[str, list] = OrderedDict()   # grammar -> free samplers
        self._grammar_verdicts: OrderedDict[str, str | None] = OrderedDict()
        self._queue: queue.Queue[Pending | None] = queue.Queue()
        self._free = [_Seq(i) for i in range(slots, 0, -1)]   # pop() takes the lowest id
        self._active: list[_Seq] = []
        self._prepare_lock = threading.Lock()    # prepare() vs itself and close()
        self._submit_lock = threading.Lock()     # submit() vs close()
        self._argmax_pool = ThreadPoolExecutor(max_workers=min(8, threads)) if threads > 1 else None
        self._stats = dict(requests=0, steps=0, step_tokens=0, step_s=0.0, prefill_s=0.0,
                           prefill_groups=0, encode_s=0.0, images_encoded=0, images_reused=0,
                           text_decode_s=0.0, image_decode_s=0.0, sample_s=0.0, prefix_copies=0)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="batch-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ requests

    @property
    def label(self) -> str:
        return self.manifest.label

    def prepare(self, messages: list[dict], *, max_tokens: int, grammar: str | None) -> Prepared:
        """Chat template + images -> libmtmd chunks (thread-safe; serialised). Images must be
        inline (``data:image/...;base64,...``): the server fetches nothing."""
        if grammar is not None:
            if self.gpu_sampling:
                raise EngineError("this server picks tokens on the GPU and applies no grammar: "
                                  "send requests without one (sleepvlm-ws score --no-grammar), "
                                  "or start it without --gpu-sampling")
            self._check_grammar(grammar)
        with self._prepare_lock:
            if self._closed:
                raise EngineError(SHUTTING_DOWN, 503)
            try:
                text, urls = self._handler.render_prompt(self._llama, messages)
            except Exception as exc:  # noqa: BLE001 - jinja, KeyError, TypeError on odd messages
                raise EngineError(f"the messages cannot be read ({type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:120]})") from None
            try:
                images = [inline_image(url) for url in urls]
                chunks, out = tokenize_prompt(self._mtmd, self._mctx, text, images)
            except ValueError as exc:
                raise EngineError(str(exc)) from None
        big = max((c.n_tokens for c in out if c.kind == "image"), default=0)
        cells = sum(c.n_tokens for c in out)
        problem = ("the request is empty" if not out else
                   f"the request needs {cells} tokens but a slot holds {self.ctx_per_slot}"
                   if cells >= self.ctx_per_slot else
                   f"an image of {big} tokens exceeds the server's batch of {self.n_batch}"
                   if big > self.n_batch else None)
        if problem:
            self._mtmd.mtmd_input_chunks_free(chunks)
            raise EngineError(problem)
        budget = max(1, min(int(max_tokens), self.ctx_per_slot - cells))
        return Prepared(out, cells, budget, grammar, chunks)

    def _check_grammar(self, grammar: str) -> None:
        """A grammar llama.cpp cannot parse is refused here; it is parsed in a child process
        first (a bad grammar can crash llama.cpp), once per distinct grammar."""
        with self._prepare_lock:
            known = grammar in self._grammar_verdicts
            problem = self._grammar_verdicts.get(grammar)
        if not known:
            from .grammar import validate_grammar_in_child

            ok, message = validate_grammar_in_child(grammar)
            problem = None if ok else message
            with self._prepare_lock:
                self._grammar_verdicts[grammar] = problem
                while len(self._grammar_verdicts) > 4 * MAX_GRAMMARS:
                    self._grammar_verdicts.popitem(last=False)
        if problem is not None:
            raise EngineError(f"the grammar is unusable: {problem}")

    def submit(self, prepared: Prepared) -> Pending:
        pending = Pending(prepared, self._thread)
        with self._submit_lock:
            if not self._closed:
                self._queue.put(pending)
                return pending
        self._release(prepared)
        pending.finish(error=SHUTTING_DOWN)
        return pending

    def stats(self) -> dict:
        """Counters since start: requests, decode steps and their time, prefill time split
        into image encoding / image-embedding decodes / text decodes, images encoded and
        reused, and ``sample_s``: reading the chosen tokens back (which waits for the GPU to
        finish the step) and, on the host, picking them."""
        return dict(self._stats, slots=self.slots, active=len(self._active),
                    queued=self._queue.qsize(), gpu_sampling=self.gpu_sampling,
                    unified_kv=self.unified_kv)

    def close(self) -> None:
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()
        while True:                       # anything still queued
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is not None:
                self._release(pending.prepared)
                pending.finish(error=SHUTTING_DOWN)
        with self._prepare_lock:        # no prepare() is using the model while it is freed
            self._free_model()

    def _free_model(self) -> None:
        lc = self._lc
        lc.llama_batch_free(self._batch)
        lc.llama_free(self._ctx)
        self._ctx = None
        self._free_chains()
        for guides in self._guides.values():
            for guide in guides:
                guide.close()
        self._guides.clear()
        if self._argmax_pool is not None:
            self._argmax_pool.shutdown()
        self._llama.close()

    def _free_chains(self) -> None:
        for chain in self._chains:
            self._lc.llama_sampler_free(chain)
        self._chains = []

    def __enter__(self) -> "BatchEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        while True:
            if self._closed:          # stop now: what is decoding and what waits gets an error
                self._fail_all(SHUTTING_DOWN)
                return
            group: list[_Seq] = []
            block = not self._active
            while self._free:
                try:
                    pending = self._queue.get(block=block and not group)
                except queue.Empty:
                    break
                if pending is None:
                    self._fail_all(SHUTTING_DOWN)
                    return
                seq = self._free.pop()
                if self._start(seq, pending):
                    group.append(seq)
            try:
                if group:
                    self._prefill(group)
                    for seq in group:           # every admitted request is now generating
                        if seq.pending is not None and seq.last < 0:
                            self._finish(seq, error="the prompt did not end in a token to "
                                                    "continue from")
                if self._active:
                    self._step()
            except Exception as exc:  # noqa: BLE001 - every waiting client gets one line
                self._fail_all(f"decoding failed ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:160]})")

    def _start(self, seq: _Seq, pending: Pending) -> bool:
        """Give ``seq`` to ``pending``; False (and the request answered) when it cannot start."""
        seq.pending, seq.next_chunk, seq.n_past = pending, 0, 0
        seq.tokens, seq.last, seq.t0 = [], -1, time.perf_counter()
        grammar = pending.prepared.grammar
        seq.guide = None
        self._active.append(seq)
        self._stats["requests"] += 1
        if grammar is not None:
            free = self._guides.get(grammar)
            if free:
                self._guides.move_to_end(grammar)
                seq.guide = free.pop()
            else:
                from .greedy_decode import GrammarGuide
                try:
                    seq.guide = GrammarGuide(self._llama, grammar)
                except ValueError:
                    self._finish(seq, error="llama.cpp rejected the grammar", status=400)
                    return False
            seq.guide.reset()
        return True

    # ------------------------------------------------------------------ prefill

    def _ensure_prefix(self, tokens: list[int]) -> None:
        """Sequence 0 holds ``tokens`` from position 0 (evaluated once)."""
        lc = self._lc
        lc.llama_memory_seq_rm(self._mem, 0, -1, -1)
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start:start + self.n_batch]
            self._fill_tokens([(0, t, start + i, False) for i, t in enumerate(part)])
            self._decode()
        self._prefix = list(tokens)

    def _prefill(self, group: list[_Seq]) -> None:
        t0 = time.perf_counter()
        lc = self._lc
        group = [s for s in group if s.pending is not None]
        for seq in group:
            lc.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)
            chunks = seq.pending.prepared.chunks
            first = chunks[0]
            if first.kind == "text" and len(chunks) > 1:   # a prefix is shared, never the whole prompt
                if self._prefix is None:
                    self._ensure_prefix(first.tokens)
                if first.tokens == self._prefix:
                    lc.llama_memory_seq_cp(self._mem, 0, seq.seq_id, -1, -1)
                    seq.n_past = len(first.tokens)
                    seq.next_chunk = 1
                    self._stats["prefix_copies"] += 1
        todo = list(group)
        while todo:
            texts = [s for s in todo if s.pending.prepared.chunks[s.next_chunk].kind == "text"]
            images = [s for s in todo if s.pending.prepared.chunks[s.next_chunk].kind == "image"]
            if texts:
                t1 = time.perf_counter()
                self._prefill_text(texts)
                self._stats["text_decode_s"] += time.perf_counter() - t1
            if images:
                self._prefill_images(images)
            for s in todo:
                s.next_chunk += 1
            todo = [s for s in todo if s.pending is not None
                    and s.next_chunk < len(s.pending.prepared.chunks)]
        self._stats["prefill_groups"] += 1
        self._stats["prefill_s"] += time.perf_counter() - t0

    def _is_last(self, seq: _Seq) -> bool:
        return seq.next_chunk == len(seq.pending.prepared.chunks) - 1

    def _prefill_text(self, seqs: list[_Seq]) -> None:
        entries, owners = [], []
        for seq in seqs:
            tokens = seq.pending.prepared.chunks[seq.next_chunk].tokens
            last = self._is_last(seq)
            for i, tok in enumerate(tokens):
                entries.append((seq.seq_id, tok, seq.n_past + i, last and i == len(tokens) - 1))
                owners.append(seq if last and i == len(tokens) - 1 else None)
            seq.n_past += len(tokens)
        for start in range(0, len(entries), self.n_batch):
            part, who = entries[start:start + self.n_batch], owners[start:start + self.n_batch]
            self._fill_tokens(part)
            self._decode()
            self._sample([(s, i) for i, s in enumerate(who) if s is not None])

    def _embedding(self, chunk: Piece) -> np.ndarray:
        cached = self._embeddings.get(chunk.key)
        if cached is not None:
            self._stats["images_reused"] += 1
            return cached
        t0 = time.perf_counter()
        try:
            embd = encode_image(self._mtmd, self._mctx, chunk.ptr, chunk.n_tokens, self.n_embd)
        except ValueError as exc:
            raise EngineError(str(exc), 500) from None
        self._stats["encode_s"] += time.perf_counter() - t0
        self._stats["images_encoded"] += 1
        self._embeddings.put(chunk.key, embd)
        return embd

    def _prefill_images(self, seqs: list[_Seq]) -> None:
        """Chunk ``next_chunk`` of every seq in ``seqs`` is an image: one embedding batch per
        ``n_batch`` tokens, whole images only."""
        items = []
        for seq in seqs:
            chunk = seq.pending.prepared.chunks[seq.next_chunk]
            try:
                items.append((seq, chunk, self._embedding(chunk)))
            except EngineError as exc:       # this request fails, the others go on
                lc = self._lc
                lc.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)
                self._finish(seq, error=str(exc))
        t0 = time.perf_counter()
        group, size = [], 0
        for item in items + [None]:
            if item is None or size + item[1].n_tokens > self.n_batch:
                if group:
                    self._decode_images(group)
                group, size = [], 0
            if item is not None:
                group.append(item)
                size += item[1].n_tokens
        self._stats["image_decode_s"] += time.perf_counter() - t0

    def _decode_images(self, items) -> None:
        lc, mtmd = self._lc, self._mtmd
        n = sum(chunk.n_tokens for _, chunk, _ in items)
        n_pos = 4 if self._mrope else 1
        embd = np.concatenate([e for _, _, e in items]).astype(np.float32, copy=False)
        pos = np.zeros((n_pos, n), dtype=np.int32)
        seq_ids = np.zeros(n, dtype=np.int32)
        logits = np.zeros(n, dtype=np.int8)
        outputs, at = [], 0
        for seq, chunk, _ in items:
            k = chunk.n_tokens
            if self._mrope:
                image = mtmd.mtmd_input_chunk_get_tokens_image(chunk.ptr)
                dp = (mtmd.mtmd_decoder_pos * k)()
                mtmd.mtmd_helper_image_get_decoder_pos(image, seq.n_past, dp)
                arr = np.frombuffer(dp, dtype=np.uint32).reshape(k, 4)   # t, x, y, z
                pos[0, at:at + k], pos[1, at:at + k] = arr[:, 0], arr[:, 2]
                pos[2, at:at + k], pos[3, at:at + k] = arr[:, 1], arr[:, 3]
            else:
                pos[0, at:at + k] = np.arange(seq.n_past, seq.n_past + k)
            seq_ids[at:at + k] = seq.seq_id
            if self._is_last(seq):
                logits[at + k - 1] = 1
                outputs.append((seq, at + k - 1))        # the batch index, as for tokens
            seq.n_past += chunk.n_pos
            at += k
        n_seq_id = np.ones(n, dtype=np.int32)
        seq_ptrs = (ctypes.POINTER(ctypes.c_int32) * n)(
            *[ctypes.cast(seq_ids.ctypes.data + 4 * i, ctypes.POINTER(ctypes.c_int32)) for i in range(n)])
        pos_flat = np.ascontiguousarray(pos.reshape(-1))
        batch = lc.llama_batch()
        batch.n_tokens = n
        batch.token = None
        batch.embd = embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        batch.pos = pos_flat.ctypes.data_as(ctypes.POINTER(lc.llama_pos))
        batch.n_seq_id = n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.seq_id = ctypes.cast(seq_ptrs, ctypes.POINTER(ctypes.POINTER(lc.llama_seq_id)))
        batch.logits = logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        non_causal = any(mtmd.mtmd_decode_use_non_causal(self._mctx, c.ptr) for _, c, _ in items)
        if non_causal:
            lc.llama_set_causal_attn(self._ctx, False)
        try:
            rc = lc.llama_decode(self._ctx, batch)
        finally:
            if non_causal:
                lc.llama_set_causal_attn(self._ctx, True)
        if rc != 0:
            raise EngineError(f"llama_decode of image embeddings returned {rc}")
        self._sample(outputs)

    # ------------------------------------------------------------------ decoding

    def _fill_tokens(self, entries) -> None:
        """``entries``: (seq_id, token, pos, logits) into the shared token batch."""
        b = self._batch
        for i, (sid, tok, pos, want) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = sid
            b.logits[i] = 1 if want else 0
        b.n_tokens = len(entries)

    def _decode(self) -> None:
        rc = self._lc.llama_decode(self._ctx, self._batch)
        if rc != 0:
            raise EngineError(f"llama_decode returned {rc}"
                              + (" (the KV cache is full)" if rc == 1 else ""))

    def _step(self) -> None:
        t0 = time.perf_counter()
        seqs = [s for s in self._active if s.last >= 0]
        if not seqs:
            return
        self._fill_tokens([(s.seq_id, s.last, s.n_past, True) for s in seqs])
        for s in seqs:
            s.n_past += 1
        self._decode()
        self._sample([(s, i) for i, s in enumerate(seqs)])
        self._stats["steps"] += 1
        self._stats["step_tokens"] += len(seqs)
        self._stats["step_s"] += time.perf_counter() - t0

    def _best(self, rows: list[int]) -> list[int]:
        lc = self._lc
        if self.gpu_sampling:
            return [int(lc.llama_get_sampled_token_ith(self._ctx, i)) for i in rows]
        views = [np.ctypeslib.as_array(lc.llama_get_logits_ith(self._ctx, i), shape=(self.n_vocab,))
                 for i in rows]
        if self._argmax_pool is not None and len(views) >= 8:
            return [int(t) for t in self._argmax_pool.map(np.argmax, views)]
        return [int(np.argmax(v)) for v in views]

    def _sample(self, outputs: list[tuple[_Seq, int]]) -> None:
        if not outputs:
            return
        t0 = time.perf_counter()
        lc = self._lc
        best = self._best([i for _, i in outputs])
        for (seq, row), token in zip(outputs, best):
            if token < 0:
                self._finish(seq, error="no token was sampled")
                continue
            if seq.guide is not None and not seq.guide.allows(token):
                logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(self._ctx, row),
                                               shape=(self.n_vocab,))
                token = seq.guide.best_allowed(logits)
                if token is None:
                    self._finish(seq, "stop")
                    continue
            if lc.llama_vocab_is_eog(self._vocab, token):
                self._finish(seq, "stop")
                continue
            if seq.guide is not None:
                seq.guide.accept(token)
            seq.tokens.append(token)
            if len(seq.tokens) >= seq.pending.prepared.max_tokens:
                self._finish(seq, "length")
            else:
                seq.last = token
        self._stats["sample_s"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ endings

    def _release(self, prepared: Prepared) -> None:
        if prepared._mtmd_chunks is not None:
            self._mtmd.mtmd_input_chunks_free(prepared._mtmd_chunks)
            prepared._mtmd_chunks = None

    def _finish(self, seq: _Seq, reason: str = "stop", error: str | None = None,
                status: int = 500) -> None:
        pending, seq.pending = seq.pending, None
        if seq in self._active:
            self._active.remove(seq)
        if seq.guide is not None:
            self._keep_guide(pending.prepared.grammar, seq.guide)
            seq.guide = None
        seq.last = -1
        self._free.append(seq)
        self._free.sort(key=lambda s: -s.seq_id)
        self._release(pending.prepared)
        if error is not None:
            pending.finish(error=error, status=status)
            return
        text = self._llama.detokenize(seq.tokens).decode("utf-8", errors="ignore")
        pending.finish({"content": text, "finish_reason": reason,
                        "prompt_tokens": pending.prepared.prompt_cells,
                        "completion_tokens": len(seq.tokens),
                        "seconds": time.perf_counter() - seq.t0})

    def _keep_guide(self, grammar: str, guide) -> None:
        """Keep a parsed grammar sampler for reuse: the pools of the last MAX_GRAMMARS grammars."""
        self._guides.setdefault(grammar, []).append(guide)
        self._guides.move_to_end(grammar)
        while len(self._guides) > MAX_GRAMMARS:
            for old in self._guides.popitem(last=False)[1]:
                old.close()

    def _fail_all(self, message: str) -> None:
        for seq in list(self._active):
            self._finish(seq, error=message)
        # sequences of a failed prefill may hold half a prompt: clear them all
        for seq in self._free:
            self._lc.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)

