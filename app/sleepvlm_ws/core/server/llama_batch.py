"""The llama.cpp plumbing of the batch engine, through llama-cpp-python's ctypes bindings: a
context of many sequences (optionally with a GPU greedy sampler per sequence), token batches,
and image-embedding batches with each image's own M-RoPE positions. Nothing here knows about
requests; the engine decides what goes into each batch.

Internals the engine uses (llama-cpp-python 0.3.36): ``llama_init_from_model`` with
``n_seq_max``, ``kv_unified`` and backend sampler configs, ``llama_batch_init``/``llama_decode``,
``llama_memory_seq_rm``/``seq_cp``, ``llama_get_logits_ith``, ``llama_get_sampled_token_ith``;
libmtmd ``mtmd_tokenize``, ``mtmd_encode_chunk``, ``mtmd_get_output_embd``,
``mtmd_image_tokens_get_decoder_pos``.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

_LOG_WARN, _LOG_CONT = 3, 5     # ggml_log_level
_mtmd_log = None                # the ctypes callback (kept alive for the process)


def quiet_mtmd(mtmd, llama_cpp) -> None:
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


class BatchContext:
    """A llama.cpp context for ``slots`` sequences (1..slots) plus sequence 0 for the shared
    prefix, each ``ctx_per_slot`` cells; with ``gpu_sampling`` a greedy sampler chain per
    sequence runs on the backend. ``ctx`` is None when llama.cpp could not create it."""

    def __init__(self, lc, model, *, slots: int, ctx_per_slot: int, n_batch: int, n_ubatch: int,
                 threads: int, unified_kv: bool, gpu_sampling: bool):
        self._lc = lc
        params = lc.llama_context_default_params()
        params.n_ctx = ctx_per_slot * (slots + 1)
        params.n_batch = n_batch
        params.n_ubatch = min(int(n_ubatch), n_batch)
        params.n_seq_max = slots + 1
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.kv_unified = bool(unified_kv)
        params.no_perf = True
        self.chains = []
        if gpu_sampling:
            configs = (lc.llama_sampler_seq_config * slots)()
            for i in range(slots):
                chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
                lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
                self.chains.append(chain)
                configs[i].seq_id = i + 1
                configs[i].sampler = ctypes.cast(chain, ctypes.c_void_p)
            params.samplers = configs
            params.n_samplers = slots
            self._configs = configs      # kept alive as long as the context
        self.ctx = lc.llama_init_from_model(model, params)
        if not self.ctx:
            self.ctx = None
            self.free()
            return
        self.mem = lc.llama_get_memory(self.ctx)
        self.batch = lc.llama_batch_init(n_batch, 0, 1)

    def fill_tokens(self, entries) -> None:
        """``entries``: (seq_id, token, pos, logits) into the shared token batch."""
        b = self.batch
        for i, (sid, tok, pos, want) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = sid
            b.logits[i] = 1 if want else 0
        b.n_tokens = len(entries)

    def decode(self) -> int:
        """``llama_decode`` of the token batch; its return code (0: done, 1: the KV is full)."""
        return self._lc.llama_decode(self.ctx, self.batch)

    def decode_images(self, mtmd, mctx, items, mrope: bool) -> int:
        """One embedding batch: ``items`` are (seq_id, n_past, chunk, embedding, want_logits),
        each image at its sequence's position (M-RoPE positions from libmtmd when ``mrope``).
        The batch index of an image's last token is its position in ``items``' concatenation;
        returns ``llama_decode``'s code."""
        lc = self._lc
        n = sum(chunk.n_tokens for _, _, chunk, _, _ in items)
        n_pos = 4 if mrope else 1
        embd = np.concatenate([e for _, _, _, e, _ in items]).astype(np.float32, copy=False)
        pos = np.zeros((n_pos, n), dtype=np.int32)
        seq_ids = np.zeros(n, dtype=np.int32)
        logits = np.zeros(n, dtype=np.int8)
        at = 0
        for seq_id, n_past, chunk, _, want in items:
            k = chunk.n_tokens
            if mrope:
                image = mtmd.mtmd_input_chunk_get_tokens_image(chunk.ptr)
                dp = (mtmd.mtmd_decoder_pos * k)()
                mtmd.mtmd_helper_image_get_decoder_pos(image, n_past, dp)
                arr = np.frombuffer(dp, dtype=np.uint32).reshape(k, 4)   # t, x, y, z
                pos[0, at:at + k], pos[1, at:at + k] = arr[:, 0], arr[:, 2]
                pos[2, at:at + k], pos[3, at:at + k] = arr[:, 1], arr[:, 3]
            else:
                pos[0, at:at + k] = np.arange(n_past, n_past + k)
            seq_ids[at:at + k] = seq_id
            if want:
                logits[at + k - 1] = 1
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
        non_causal = any(mtmd.mtmd_decode_use_non_causal(mctx, c.ptr) for _, _, c, _, _ in items)
        if non_causal:
            lc.llama_set_causal_attn(self.ctx, False)
        try:
            return lc.llama_decode(self.ctx, batch)
        finally:
            if non_causal:
                lc.llama_set_causal_attn(self.ctx, True)

    def free(self) -> None:
        """Free the batch, the context and the sampler chains (once)."""
        lc = self._lc
        if getattr(self, "batch", None) is not None:
            lc.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx is not None:
            lc.llama_free(self.ctx)
            self.ctx = None
        for chain in self.chains:
            lc.llama_sampler_free(chain)
        self.chains = []
