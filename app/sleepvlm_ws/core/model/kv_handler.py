"""A llama-cpp-python chat handler that keeps the system prompt's KV cache between requests.

Every SleepVLM request starts with the same ~2,500-token system prompt. The stock
``MTMDChatHandler`` (llama-cpp-python 0.3.36) calls ``llama.reset()`` and clears the whole KV
cache on every request that carries images, so that prompt is read again for every epoch.
``PromptKVChatHandler`` does what the stock handler does, in the same order, except:

- Prefix kept. The request is tokenised by libmtmd into chunks: text, image, text, image, ...
  The first text chunk (system message, the user turn's start and the first label, up to the
  first image) is the same for every epoch. Its KV cells (positions 0..L-1, plain text, so one
  cell per position) are evaluated once per model load; each later request removes only the
  cells from position L on (``llama_memory_seq_rm(mem, 0, L, -1)``) and evaluates the rest:
  the three images, the labels between them, the assistant header, then generation.
  The whole first chunk is kept or nothing: if it changed (another system prompt), the cache
  is cleared and everything is evaluated, exactly as the stock handler does.
- Image embeddings kept (``image_cache_size`` > 0). Each epoch image appears in three
  consecutive requests. The vision encoder's output for an image (``mtmd_encode_chunk`` then
  ``mtmd_get_output_embd``, copied out; ``core.model.mtmd_prompt``, shared with the lab server's
  engine) is kept in a small LRU keyed by the PNG's SHA-256 and
  fed back through ``mtmd_helper_decode_image_chunk``, the very call the stock path
  (``mtmd_helper_eval_chunk_single``) makes after encoding. Positions (M-RoPE) are computed by
  that call from the current position, so a cached image may sit at another place in the
  prompt.

Why the answers are identical to the stock handler's (checked by tests/model/test_runtime.py): the
first chunk is evaluated alone from position 0 in both paths (same ``llama.eval`` batches),
so the kept cells hold the same numbers the stock path would recompute; ``seq_rm`` moves the
cache head back to the first freed cell, so the rest lands in the same cells as after a
clear; the encoder is deterministic. (A partly matching prefix is deliberately not reused:
the rest of it would be evaluated in other batch boundaries than the stock path, which on
some backends changes rounding.)

The handler serves one ``Llama`` at a time and is not thread-safe (the runtime serialises
requests). Streaming is not supported.
"""

from __future__ import annotations

import ctypes
import sys
import time
from dataclasses import dataclass
from typing import Any

import jinja2
import llama_cpp
import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp._utils import suppress_stdout_stderr
from llama_cpp.llama_chat_format import Jinja2ChatFormatter, MTMDChatHandler

from .greedy_decode import GrammarGuide, StageProbe, greedy_decode
from .mtmd_prompt import EmbeddingCache, Piece, encode_image, tokenize_prompt
from .request import RequestInterrupted

__all__ = ["PromptKVChatHandler", "RequestStats"]


@dataclass
class RequestStats:
    """What one request cost the model (set on the handler after each call)."""

    prompt_cells: int = 0          # KV cells the prompt occupies (text tokens + image tokens)
    prefix_reused: int = 0         # cells of the shared prefix kept from an earlier request
    text_evaluated: int = 0        # text tokens evaluated for this request
    images_encoded: int = 0        # images run through the vision encoder
    images_reused: int = 0         # images whose encoder output came from the cache
    prompt_seconds: float = 0.0    # wall time to tokenise and evaluate the prompt
    decode_seconds: float = 0.0    # wall time to generate the answer
    completion_tokens: int = 0
    stage_seconds: float = 0.0     # of decode_seconds: the stage probabilities' own work
    stage_extra_decodes: int = 0   # single-token evaluations of branches not taken


class PromptKVChatHandler(MTMDChatHandler):
    """``MTMDChatHandler`` that keeps the shared prompt prefix and recent image embeddings.

    ``keep_prefix=False`` and ``image_cache_size=0`` reproduce the stock handler's work
    exactly (clear everything, evaluate everything), which is what the benchmark's "without"
    rows and the identity tests use.

    ``stage_rules`` (``stage_confidence.stage_rule_table`` of the pack's rule vocabulary; None:
    off) turns on the stage probabilities of greedy answers under a grammar
    (``greedy_decode.StageProbe``); each call leaves them in ``last_stage`` (None when off, when
    the answer decided no stage, or for non-greedy sampling).

    ``interrupt`` (a ``threading.Event``; None: never) is looked at between the prompt's chunks,
    between an image's encoding and its decoding, and before each generated token: once it is set the call raises ``RequestInterrupted``
    (a background request giving way to the epoch on screen). The kept prefix stays valid, so
    the request asked again later costs only what it had not yet reused."""

    def __init__(self, clip_model_path: str, *, keep_prefix: bool = True, image_cache_size: int = 6,
                 verbose: bool = False, use_gpu: bool = True):
        super().__init__(clip_model_path=clip_model_path, verbose=verbose, use_gpu=use_gpu)
        self.keep_prefix = bool(keep_prefix)
        self.image_cache_size = max(0, int(image_cache_size))
        self._prefix: list[int] = []                    # tokens at positions 0..len-1 in seq 0
        self._embeddings = EmbeddingCache(self.image_cache_size)
        self._template = None
        self._guides: dict[str, GrammarGuide] = {}
        self._template_source: str | None = None
        self.last_stats = RequestStats()
        self.stage_rules = None
        self.last_stage = None
        self._probe: StageProbe | None = None
        self.interrupt = None                           # threading.Event, set by the runtime

    # ------------------------------------------------------------------ state

    def forget(self) -> None:
        """Drop the kept prefix and embeddings (the next request evaluates everything)."""
        self._prefix = []
        self._embeddings.clear()
        for guide in self._guides.values():
            guide.close()
        self._guides.clear()
        self._probe = None

    def interrupted(self) -> bool:
        """Whether the request in progress is to give way (``interrupt`` is set).

        Returns
        -------
        bool
        """
        return self.interrupt is not None and self.interrupt.is_set()

    def _kept_prefix_length(self, llama, tokens: list[int]) -> int:
        """``len(tokens)`` when exactly these tokens are still at positions 0.. of the KV cache
        from an earlier request (and nothing else has been evaluated over them); else 0."""
        n = len(tokens)
        if not self.keep_prefix or not n or self._prefix != tokens or int(llama.n_tokens) < n:
            return 0
        if llama.input_ids[:n].tolist() != tokens:
            return 0
        return n

    # ------------------------------------------------------------------ prompt text

    def render_prompt(self, llama, messages: list[dict]) -> tuple[str, list[str]]:
        """The GGUF's chat template applied to ``messages``, rendered as the stock handler does.

        Parameters
        ----------
        llama : llama_cpp.Llama
            The loaded model (its chat template, BOS and EOS tokens).
        messages : list of dict
            OpenAI-style chat messages; images as ``image_url`` content parts.

        Returns
        -------
        text : str
            The prompt, with libmtmd's media marker where each image goes and the generation
            prompt (assistant header) at the end.
        image_urls : list of str
            The images' URLs in prompt order.

        Raises
        ------
        ValueError
            When the template itself raises (``raise_exception``), e.g. for roles it refuses.
        """
        image_urls = self.get_image_urls(messages)
        marker = self._mtmd_cpp.mtmd_default_marker().decode("utf-8")
        source = self._get_chat_template(llama)
        if self._template is None or source != self._template_source:
            env = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True,
                extensions=[Jinja2ChatFormatter.IgnoreGenerationTags, jinja2.ext.loopcontrols])
            env.filters["tojson"] = Jinja2ChatFormatter.tojson
            self._template, self._template_source = env.from_string(source), source

        def raise_exception(message: str):
            raise ValueError(message)

        text = self._template.render(
            messages=self._get_template_messages(messages, marker), add_generation_prompt=True,
            eos_token=self._decode_token_piece(llama.detokenize([llama.token_eos()])),
            bos_token=self._decode_token_piece(llama.detokenize([llama.token_bos()])),
            raise_exception=raise_exception, functions=None, function_call=None, tools=None,
            tool_choice=None, strftime_now=Jinja2ChatFormatter.strftime_now)
        return self._postprocess_template_text(text, image_urls, marker), image_urls

    # ------------------------------------------------------------------ evaluation

    def _image_embedding(self, piece: Piece, n_embd: int) -> np.ndarray:
        """The encoder output of an image piece, from the cache or freshly encoded."""
        embedding = self._embeddings.get(piece.key)
        if embedding is not None:
            self.last_stats.images_reused += 1
            return embedding
        with suppress_stdout_stderr(disable=self.verbose):
            embedding = encode_image(self._mtmd_cpp, self.mtmd_ctx, piece.ptr, piece.n_tokens, n_embd)
        self.last_stats.images_encoded += 1
        self._embeddings.put(piece.key, embedding)
        return embedding

    def _eval_image(self, llama, piece: Piece) -> None:
        mtmd = self._mtmd_cpp
        chunk = piece.ptr
        new_n_past = llama_cpp.llama_pos(0)
        if not self.image_cache_size:          # exactly the stock call
            with suppress_stdout_stderr(disable=self.verbose):
                rc = mtmd.mtmd_helper_eval_chunk_single(
                    self.mtmd_ctx, llama.ctx, chunk, llama_cpp.llama_pos(llama.n_tokens),
                    llama_cpp.llama_seq_id(0), llama.n_batch, False, ctypes.byref(new_n_past))
            self.last_stats.images_encoded += 1
        else:
            n_embd = int(llama_cpp.llama_model_n_embd_inp(llama.model))
            embedding = self._image_embedding(piece, n_embd)
            if self.interrupted():      # the encoding is kept: asked again, it is reused
                raise RequestInterrupted("the prompt was interrupted")
            with suppress_stdout_stderr(disable=self.verbose):
                rc = mtmd.mtmd_helper_decode_image_chunk(
                    self.mtmd_ctx, llama.ctx, chunk,
                    embedding.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                    llama_cpp.llama_pos(llama.n_tokens), llama_cpp.llama_seq_id(0), llama.n_batch,
                    ctypes.byref(new_n_past), mtmd.mtmd_helper_post_decode_callback(), None)
        if rc != 0:
            raise ValueError(f"decoding an image failed (error {rc})")
        llama.n_tokens = int(new_n_past.value)

    def _start(self, llama, first_text: list[int]) -> int:
        """Prepare the KV cache for a prompt starting with ``first_text``; return how many of
        its tokens are already there."""
        kept = self._kept_prefix_length(llama, first_text)
        if kept > 0:
            memory = llama_cpp.llama_get_memory(llama.ctx)
            if memory is not None and llama_cpp.llama_memory_seq_rm(memory, 0, kept, -1):
                llama.n_tokens = kept
                return kept
        llama.reset()
        llama._ctx.kv_cache_clear()
        return 0

    def evaluate_prompt(self, llama, text: str, images: list[bytes], max_new_tokens: int) -> None:
        """Tokenise ``text`` with ``images`` and evaluate it into the KV cache (seq 0).

        The first text piece is reused when the cache still holds exactly it; image embeddings
        come from the cache when ``image_cache_size`` > 0. What it cost is left in ``last_stats``.

        Parameters
        ----------
        llama : llama_cpp.Llama
            The loaded model.
        text : str
            The rendered prompt (see :meth:`render_prompt`), with one media marker per image.
        images : list of bytes
            The image files (PNG or JPEG), in marker order.
        max_new_tokens : int
            Tokens the context must still hold after the prompt (at least 1 is assumed).

        Raises
        ------
        ValueError
            When the prompt plus ``max_new_tokens`` exceeds the context, the prompt cannot be
            tokenised, or an image cannot be decoded or evaluated. The kept prefix is dropped.
        RequestInterrupted
            ``interrupt`` was set (looked at between chunks); the kept prefix stays.
        """
        self._init_mtmd_context(llama)
        stats = self.last_stats = RequestStats()
        t0 = time.perf_counter()
        with suppress_stdout_stderr(disable=self.verbose):
            chunks, pieces = tokenize_prompt(self._mtmd_cpp, self.mtmd_ctx, text, images)
        try:
            stats.prompt_cells = sum(p.n_tokens for p in pieces)
            if stats.prompt_cells + max(1, int(max_new_tokens)) > llama.n_ctx():
                raise ValueError(f"the request needs {stats.prompt_cells} + {max_new_tokens} tokens "
                                 f"but the context holds {llama.n_ctx()}")
            first_text = pieces[0].tokens if pieces and pieces[0].kind == "text" else []
            kept = self._start(llama, first_text)
            stats.prefix_reused = kept
            self._prefix = []                        # invalid until the first chunk is in
            for i, piece in enumerate(pieces):
                if i and self.interrupted():
                    raise RequestInterrupted("the prompt was interrupted")
                if piece.kind == "text":
                    tokens = piece.tokens[kept:] if i == 0 else piece.tokens
                    llama.eval(tokens)
                    stats.text_evaluated += len(tokens)
                    if i == 0 and self.keep_prefix:
                        self._prefix = list(piece.tokens)
                else:
                    self._eval_image(llama, piece)
        except RequestInterrupted:
            raise                                    # the chunks before are whole: prefix kept
        except BaseException:
            self._prefix = []
            raise
        finally:
            self._mtmd_cpp.mtmd_input_chunks_free(chunks)
        stats.prompt_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ the handler call

    def _guide(self, llama, grammar) -> GrammarGuide | None:
        text = getattr(grammar, "_grammar", None) if grammar is not None else None
        if text is None:
            return None
        guide = self._guides.get(text)
        if guide is None:
            guide = self._guides[text] = GrammarGuide(llama, text)
        return guide

    def _stage_probe(self, llama, guide: GrammarGuide | None) -> StageProbe | None:
        if self.stage_rules is None or guide is None:
            return None
        if self._probe is None or self._probe.llama is not llama or self._probe.rules is not self.stage_rules:
            self._probe = StageProbe(llama, self.stage_rules)
        return self._probe

    @staticmethod
    def _plain_greedy(kwargs: dict) -> bool:
        """True when the sampling settings amount to plain greedy decoding."""
        return (kwargs.get("temperature", 0.2) == 0.0 and not kwargs.get("logits_processor")
                and not kwargs.get("logit_bias") and not kwargs.get("stop")
                and kwargs.get("repeat_penalty", 1.0) == 1.0
                and kwargs.get("frequency_penalty", 0.0) == 0.0
                and kwargs.get("presence_penalty", 0.0) == 0.0
                and kwargs.get("mirostat_mode", 0) == 0)

    def __call__(self, *, llama, messages, stream: bool = False, max_tokens: int | None = None,
                 response_format=None, **kwargs: Any):
        if stream:
            raise ValueError("PromptKVChatHandler does not stream")
        for unsupported in ("functions", "function_call", "tools", "tool_choice"):
            if kwargs.get(unsupported):
                raise ValueError(f"PromptKVChatHandler does not support {unsupported}")
        if response_format is not None:
            raise ValueError("pass a grammar, not response_format")
        self._init_mtmd_context(llama)
        text, urls = self.render_prompt(llama, messages)
        if self.verbose:
            print(text, file=sys.stderr)
        images = [self.load_image(url) for url in urls]
        budget = int(max_tokens) if max_tokens and max_tokens > 0 else 0
        self.evaluate_prompt(llama, text, images, max(1, budget))
        if not budget:
            budget = llama.n_ctx() - self.last_stats.prompt_cells
        t0 = time.perf_counter()
        self.last_stage = None
        if self._plain_greedy(kwargs):
            guide = self._guide(llama, kwargs.get("grammar"))
            decoded = greedy_decode(llama, budget, guide, self._stage_probe(llama, guide),
                                    stop=self.interrupted)
            if decoded.finish_reason == "interrupted":
                raise RequestInterrupted("the answer was interrupted")
            content = llama.detokenize(decoded.tokens).decode("utf-8", errors="ignore")
            self.last_stage = decoded.stage
            if decoded.stage is not None:
                self.last_stats.stage_seconds = decoded.stage.seconds
                self.last_stats.stage_extra_decodes = decoded.stage.extra_decodes
            finish_reason, n_completion = decoded.finish_reason, len(decoded.tokens)
            created, model = int(time.time()), kwargs.get("model") or llama.model_path
        else:                                   # llama-cpp-python's own sampling chain
            prompt = llama.input_ids[: llama.n_tokens].tolist()
            completion = llama.create_completion(
                prompt=prompt, max_tokens=budget, stream=False,
                **{k: kwargs[k] for k in _COMPLETION_ARGS if k in kwargs})
            choice = completion["choices"][0]
            content, finish_reason = choice["text"], choice["finish_reason"]
            n_completion = int(completion["usage"]["completion_tokens"])
            created, model = completion["created"], completion["model"]
        self.last_stats.decode_seconds = time.perf_counter() - t0
        self.last_stats.completion_tokens = n_completion
        prompt_cells = self.last_stats.prompt_cells
        return {
            "id": f"chatcmpl-{created}-{id(self):x}", "object": "chat.completion",
            "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_cells, "completion_tokens": n_completion,
                      "total_tokens": prompt_cells + n_completion},
        }


_COMPLETION_ARGS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "stop", "seed",
                    "presence_penalty", "frequency_penalty", "repeat_penalty", "tfs_z",
                    "mirostat_mode", "mirostat_tau", "mirostat_eta", "model", "logits_processor",
                    "grammar", "logit_bias")
