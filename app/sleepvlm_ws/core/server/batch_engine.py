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
- Image embeddings are kept (an LRU keyed by the PNG's SHA-256, as in process): each epoch
  image goes through the vision encoder once, not three times.
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

``prepare`` turns OpenAI chat messages into the tokenised request (the GGUF's chat template,
libmtmd's tokeniser) in the caller's thread; ``submit(prepared)`` (thread-safe) returns a
``RequestHandle`` to wait on; ``stats()`` says where the time went. Answers are the tokens the
in-process runtime would choose, up to rounding that depends on how many sequences share a
decode. The llama.cpp internals it uses are listed in ``llama_batch``, which holds most of them.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ...errors import ModelPackError
from ..model.model_pack import verify_pack
from ..model.mtmd_prompt import EmbeddingCache, Piece, encode_image
from .grammar_pool import GrammarPool
from .engine_request import (SHUTTING_DOWN, EngineError, PreparedRequest, RequestHandle, SlotSequence,
                             prepare_request)
from .llama_batch import BatchContext, quiet_mtmd

MAX_SLOTS = 255                 # llama.cpp's LLAMA_MAX_SEQ is 256; sequence 0 holds the prefix
IMAGE_CACHE_PER_SLOT = 4        # kept embeddings: enough for every slot's three images and more

__all__ = ["BatchEngine", "EngineError", "RequestHandle", "PreparedRequest", "MAX_SLOTS"]


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
            # late: llama.cpp (and kv_handler, which imports it) loads only when a model is opened
            import llama_cpp
            from llama_cpp import Llama

            from ..model.kv_handler import PromptKVChatHandler
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
        quiet_mtmd(self._mtmd, llama_cpp)
        self._mctx = self._handler.mtmd_ctx
        self._vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        self.n_vocab = int(self._llama.n_vocab())
        self.n_embd = int(llama_cpp.llama_model_n_embd_inp(self._llama.model))
        self._mrope = bool(self._mtmd.mtmd_decode_use_mrope(self._mctx))

        self.unified_kv = bool(unified_kv)
        self._bctx = BatchContext(llama_cpp, self._llama.model, slots=slots,
                                  ctx_per_slot=self.ctx_per_slot, n_batch=self.n_batch,
                                  n_ubatch=n_ubatch, threads=threads, unified_kv=self.unified_kv,
                                  gpu_sampling=self.gpu_sampling)
        if self._bctx.ctx is None:
            self._llama.close()
            raise ModelPackError(self.manifest.lm_path, "llama.cpp could not create the batch "
                                 f"context ({slots} slots x {self.ctx_per_slot} tokens)")
        self._ctx, self._mem = self._bctx.ctx, self._bctx.mem

        self._prefix: list[int] | None = None
        self._embeddings = EmbeddingCache(self._image_cache_size)
        self._grammars = GrammarPool(self._llama)
        self._queue: queue.Queue[RequestHandle | None] = queue.Queue()
        self._free = [SlotSequence(i) for i in range(slots, 0, -1)]   # pop() takes the lowest id
        self._active: list[SlotSequence] = []
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

    def prepare(self, messages: list[dict], *, max_tokens: int, grammar: str | None) -> PreparedRequest:
        """Chat template + images -> libmtmd chunks (thread-safe; serialised).

        Parameters
        ----------
        messages : list of dict
            OpenAI chat messages; images inline (``data:image/...;base64,...``): nothing is fetched.
        max_tokens : int
            Longest answer; cut to what a slot holds after the prompt (at least 1).
        grammar : str or None
            A GBNF answer grammar (refused when the engine picks tokens on the GPU).

        Returns
        -------
        PreparedRequest
            For ``submit``. Unreadable messages or images, an unusable grammar, a prompt no slot
            holds or a shutting-down engine raise EngineError (one line).
        """
        if grammar is not None:
            if self.gpu_sampling:
                raise EngineError("this server picks tokens on the GPU and applies no grammar: "
                                  "send requests without one (sleepvlm-ws score --no-grammar), "
                                  "or start it without --gpu-sampling")
            problem = self._grammars.problem(grammar)
            if problem is not None:
                raise EngineError(f"the grammar is unusable: {problem}")
        with self._prepare_lock:
            if self._closed:
                raise EngineError(SHUTTING_DOWN, 503)
            return prepare_request(self._handler, self._llama, messages, max_tokens=max_tokens,
                                   grammar=grammar, ctx_per_slot=self.ctx_per_slot,
                                   n_batch=self.n_batch)

    def submit(self, prepared: PreparedRequest) -> RequestHandle:
        """Queue a prepared request for decoding (thread-safe).

        Parameters
        ----------
        prepared : PreparedRequest
            From :meth:`prepare`; the engine frees its libmtmd chunks once done.

        Returns
        -------
        RequestHandle
            To wait on; after :meth:`close` it is already finished with the shutting-down error.
        """
        pending = RequestHandle(prepared, self._thread)
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
        self._bctx.free()
        self._ctx = None
        self._grammars.close()
        if self._argmax_pool is not None:
            self._argmax_pool.shutdown()
        self._llama.close()

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
            group: list[SlotSequence] = []
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

    def _start(self, seq: SlotSequence, pending: RequestHandle) -> bool:
        """Give ``seq`` to ``pending``; False (and the request answered) when it cannot start."""
        seq.pending, seq.next_chunk, seq.n_past = pending, 0, 0
        seq.tokens, seq.last, seq.t0 = [], -1, time.perf_counter()
        grammar = pending.prepared.grammar
        seq.guide = None
        self._active.append(seq)
        self._stats["requests"] += 1
        if grammar is not None:
            try:
                seq.guide = self._grammars.take(grammar)
            except ValueError:
                self._finish(seq, error="llama.cpp rejected the grammar", status=400)
                return False
        return True

    # ------------------------------------------------------------------ prefill

    def _ensure_prefix(self, tokens: list[int]) -> None:
        """Sequence 0 holds ``tokens`` from position 0 (evaluated once)."""
        lc = self._lc
        lc.llama_memory_seq_rm(self._mem, 0, -1, -1)
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start:start + self.n_batch]
            self._bctx.fill_tokens([(0, t, start + i, False) for i, t in enumerate(part)])
            self._decode()
        self._prefix = list(tokens)

    def _prefill(self, group: list[SlotSequence]) -> None:
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

    def _is_last(self, seq: SlotSequence) -> bool:
        return seq.next_chunk == len(seq.pending.prepared.chunks) - 1

    def _prefill_text(self, seqs: list[SlotSequence]) -> None:
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
            self._bctx.fill_tokens(part)
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

    def _prefill_images(self, seqs: list[SlotSequence]) -> None:
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
        batch, outputs, at = [], [], 0
        for seq, chunk, embd in items:
            last = self._is_last(seq)
            batch.append((seq.seq_id, seq.n_past, chunk, embd, last))
            at += chunk.n_tokens
            if last:
                outputs.append((seq, at - 1))        # the batch index, as for tokens
            seq.n_past += chunk.n_pos
        rc = self._bctx.decode_images(self._mtmd, self._mctx, batch, self._mrope)
        if rc != 0:
            raise EngineError(f"llama_decode of image embeddings returned {rc}")
        self._sample(outputs)

    # ------------------------------------------------------------------ decoding

    def _decode(self) -> None:
        rc = self._bctx.decode()
        if rc != 0:
            raise EngineError(f"llama_decode returned {rc}"
                              + (" (the KV cache is full)" if rc == 1 else ""))

    def _step(self) -> None:
        t0 = time.perf_counter()
        seqs = [s for s in self._active if s.last >= 0]
        if not seqs:
            return
        self._bctx.fill_tokens([(s.seq_id, s.last, s.n_past, True) for s in seqs])
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

    def _sample(self, outputs: list[tuple[SlotSequence, int]]) -> None:
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

    def _release(self, prepared: PreparedRequest) -> None:
        if prepared._mtmd_chunks is not None:
            self._mtmd.mtmd_input_chunks_free(prepared._mtmd_chunks)
            prepared._mtmd_chunks = None

    def _finish(self, seq: SlotSequence, reason: str = "stop", error: str | None = None,
                status: int = 500) -> None:
        pending, seq.pending = seq.pending, None
        if seq in self._active:
            self._active.remove(seq)
        if seq.guide is not None:
            self._grammars.give_back(pending.prepared.grammar, seq.guide)
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

    def _fail_all(self, message: str) -> None:
        for seq in list(self._active):
            self._finish(seq, error=message)
        # sequences of a failed prefill may hold half a prompt: clear them all
        for seq in self._free:
            self._lc.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)

