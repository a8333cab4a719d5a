"""The local model runtime: a verified model pack run in-process by llama-cpp-python.

``LocalRuntime(pack_dir)`` checks the pack first (every file's size and SHA-256,
``model_pack.verify_pack``): nothing is loaded from a pack that fails. It then checks both
answer grammars in a child process (an invalid GBNF grammar crashes llama-cpp-python 0.3.36),
and loads the language model with the vision projector through
``kv_handler.PromptKVChatHandler``, which keeps the system prompt's KV cache and recent image
embeddings between requests (``keep_prompt_cache=False``: everything is evaluated afresh for
every request, as llama-cpp-python's stock handler does; the answers are the same).

``suggest(images, rationale=...)`` sends one SleepVLM request (``core.model.request``) and reads the
answer with ``core.model.answer.parse_answer``:

- decoding is near-greedy as in SleepVLM's evaluation: temperature 0 (greedy; top_p 0.8 is
  passed but has no effect at temperature 0), no repetition penalty, fixed seed;
- the fast pass is constrained by the coarse grammar (applicable_rules + sleep_stage, a few
  tokens); the rationale pass by the full grammar (reasoning_text first, as in training);
- an edge request (a neighbour missing) gets the ``edge_epoch`` flag;
- with ``confidence`` (default) the answer carries the model's probability for each of the
  five stages under the grammar (``RuntimeAnswer.confidence``, ``core.model.stage_confidence``:
  where the stage is decided and how the branches not taken are followed); the answer's text
  is the same with and without it.

Greedy answers are reproducible for one build, machine and ``n_threads``: another thread count
changes the rounding of the matrix products and can change a token.

Defaults suit a 2-core laptop: CPU only, ``n_threads = os.cpu_count()``. llama.cpp's threads
spin while they wait, so other busy processes on the same cores slow it down many times over
(seen: 10x with 2 threads on 2 shared cores; 1 thread was unaffected). Requests are
serialised by a lock: one ``LocalRuntime`` may be shared by threads, one request at a time.
``llama_cpp`` is imported only when a runtime is made, so the rest of the app runs without it.

Known limit: with a CUDA build of llama-cpp-python 0.3.36 on the lent GPU image (Python 3.12,
scipy 1.18, numpy 2.5), importing scipy *before* llama_cpp made model loading segfault; importing
llama_cpp first worked. The CPU build here does not mind the order.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import ModelPackError
from ..base.stages import Stage
from .answer import Answer, parse_answer
from .grammar import answer_gbnf, validate_grammar_in_child
from .model_pack import PackManifest, verify_pack
from .request import EDGE_FLAG, EpochImages, build_messages
from .stage_confidence import StageDistribution, stage_rule_table

SEED = 20260326
TEMPERATURE = 0.0
TOP_P = 0.8
FAST_MAX_TOKENS = 128          # a coarse answer is about 20 tokens
RATIONALE_MAX_TOKENS = 1024    # as in SleepVLM's evaluation
IMAGE_CACHE_SIZE = 6           # encoder outputs kept (each image serves three requests)

__all__ = ["LocalRuntime", "RuntimeAnswer", "SEED", "TEMPERATURE", "TOP_P", "FAST_MAX_TOKENS",
           "RATIONALE_MAX_TOKENS"]


@dataclass(frozen=True)
class RuntimeAnswer:
    """One answer: the parsed ``answer``, the model's ``raw`` text, the prompt's size in tokens
    (text tokens plus image tokens: the KV cells it fills), tokens generated, and wall seconds."""

    answer: Answer
    raw: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    prefix_reused: int = 0        # prompt tokens kept from the previous request
    finish_reason: str = ""       # "stop" (grammar complete) or "length" (max_tokens hit)
    confidence: StageDistribution | None = None   # the stage probabilities (None: unknown)

    @property
    def stage_probabilities(self) -> dict[Stage, float] | None:
        """The five stage probabilities (sum 1), None when unknown."""
        return None if self.confidence is None else dict(self.confidence.probabilities)

    @property
    def stage_probability(self) -> float | None:
        """The probability of the answer's own stage, None when unknown."""
        c = self.confidence
        if c is None or self.answer.stage is not c.chosen:
            return None
        return c.probability


class LocalRuntime:
    """A model pack loaded for inference. ``model_id`` is the LM file's SHA-256."""

    def __init__(self, pack_dir: str | Path, *, n_threads: int | None = None, n_gpu_layers: int = 0,
                 n_ctx: int | None = None, keep_prompt_cache: bool = True,
                 cache_image_embeddings: bool | None = None, verify_cache: bool = True,
                 use_grammar: bool = True, confidence: bool = True):
        self.manifest: PackManifest = verify_pack(pack_dir, cache=verify_cache)  # before any load
        self.pack_dir = Path(self.manifest.pack_dir or pack_dir)
        self.model_id = self.manifest.files["lm"].sha256
        self.renderer_version = self.manifest.renderer_version   # the pixels it was trained on
        self.system_prompt = self.manifest.system_prompt()
        self.rule_ids = tuple(self.manifest.rule_vocabulary)
        self.keep_prompt_cache = bool(keep_prompt_cache)
        self.use_grammar = bool(use_grammar)     # False: free text (benchmarks, diagnosis)
        if cache_image_embeddings is None:
            cache_image_embeddings = self.keep_prompt_cache
        self.n_threads = max(1, int(n_threads or os.cpu_count() or 1))
        self.n_ctx = int(n_ctx or self.manifest.context_size)
        self._lock = threading.Lock()
        self._llama = None

        try:
            # late: llama.cpp (and kv_handler, which imports it) loads only when a model is opened
            from llama_cpp import Llama
            from llama_cpp.llama_grammar import LlamaGrammar

            from .kv_handler import PromptKVChatHandler
        except ImportError as exc:
            raise ModelPackError(None, f"llama-cpp-python is not installed or broken ({exc}); "
                                       "install llama-cpp-python==0.3.36 to run models locally") from None

        self._grammar_text = {}
        for coarse in (True, False):
            gbnf = answer_gbnf(coarse, self.rule_ids)
            ok, message = validate_grammar_in_child(gbnf)
            if not ok:
                raise ModelPackError(self.pack_dir, f"the answer grammar for this pack's rule "
                                                    f"vocabulary is unusable: {message}")
            self._grammar_text[coarse] = gbnf
        self._grammar = {coarse: LlamaGrammar.from_string(text, verbose=False)
                         for coarse, text in self._grammar_text.items()}

        try:
            self._handler = PromptKVChatHandler(
                str(self.manifest.mmproj_path), keep_prefix=self.keep_prompt_cache,
                image_cache_size=IMAGE_CACHE_SIZE if cache_image_embeddings else 0,
                use_gpu=n_gpu_layers != 0)
            self._llama = Llama(model_path=str(self.manifest.lm_path), chat_handler=self._handler,
                                n_ctx=self.n_ctx, n_threads=self.n_threads,
                                n_threads_batch=self.n_threads, n_gpu_layers=int(n_gpu_layers),
                                flash_attn=True, seed=SEED, verbose=False)
            self._handler._init_mtmd_context(self._llama)   # load the projector now, not mid-run
            if confidence:
                self._handler.stage_rules = stage_rule_table(self.rule_ids)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelPackError(self.manifest.lm_path,
                                 f"llama.cpp could not load the model: {exc}") from None

    # ------------------------------------------------------------------ properties

    @property
    def label(self) -> str:
        return self.manifest.label

    @property
    def last_stats(self):
        """``kv_handler.RequestStats`` of the last request."""
        return self._handler.last_stats

    def grammar_text(self, *, rationale: bool) -> str:
        return self._grammar_text[not rationale]

    # ------------------------------------------------------------------ inference

    # A request here can give way half-way (``suggest(interrupt=...)``): a background pass
    # lets the epoch on screen go first.
    interruptible = True

    def suggest(self, images: EpochImages, *, rationale: bool, max_tokens: int | None = None,
                interrupt: threading.Event | None = None) -> RuntimeAnswer:
        """The model's answer for ``images.target``.

        Parameters
        ----------
        images : EpochImages
            The preceding, target and following epoch images.
        rationale : bool
            Ask for the reasoning too (the slow pass); else stage and rule IDs only.
        max_tokens : int, optional
            New-token budget (default 128 fast, 1024 with the rationale).
        interrupt : threading.Event, optional
            Looked at between the prompt's parts and before each new token: once set, the
            request is given up (the epoch on screen preempting a background pass).

        Returns
        -------
        RuntimeAnswer

        Raises
        ------
        RequestInterrupted
            ``interrupt`` was set before the answer was complete; nothing was answered.
        ModelPackError
            The model was closed, or could not answer (e.g. the request does not fit).
        """
        if not isinstance(images, EpochImages):
            raise TypeError("suggest() needs EpochImages")
        budget = int(max_tokens or (RATIONALE_MAX_TOKENS if rationale else FAST_MAX_TOKENS))
        messages = build_messages(self.system_prompt, images)
        with self._lock:
            if self._llama is None:
                raise ModelPackError(self.pack_dir, "the model was closed")
            t0 = time.perf_counter()
            self._handler.interrupt = interrupt
            try:
                response = self._llama.create_chat_completion(
                    messages=messages, temperature=TEMPERATURE, top_p=TOP_P, top_k=0, min_p=0.0,
                    repeat_penalty=1.0, seed=SEED, max_tokens=budget,
                    grammar=self._grammar[not rationale] if self.use_grammar else None)
            except ValueError as exc:        # e.g. the request does not fit the context
                raise ModelPackError(self.pack_dir, f"the model could not answer: {exc}") from None
            finally:
                self._handler.interrupt = None
            seconds = time.perf_counter() - t0
            stats = self._handler.last_stats
            confidence = self._handler.last_stage
        choice = response["choices"][0]
        raw = choice["message"]["content"] or ""
        answer = parse_answer(raw, rules=self.rule_ids)
        if images.edge and EDGE_FLAG not in answer.flags:
            answer.flags.append(EDGE_FLAG)
        usage = response.get("usage") or {}
        return RuntimeAnswer(answer=answer, raw=raw, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                             completion_tokens=int(usage.get("completion_tokens", 0)),
                             seconds=seconds, prefix_reused=int(stats.prefix_reused),
                             finish_reason=str(choice.get("finish_reason") or ""),
                             confidence=_matching(confidence, answer))

    @property
    def confidence(self) -> bool:
        """Whether answers carry stage probabilities."""
        return self._handler.stage_rules is not None

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Free the model (a later ``suggest`` raises ModelPackError)."""
        with self._lock:
            llama, self._llama = self._llama, None
            if llama is not None:
                self._handler.forget()
                llama.close()

    def __enter__(self) -> "LocalRuntime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _matching(confidence: StageDistribution | None, answer: Answer) -> StageDistribution | None:
    """The probabilities, when they are about the stage the parsed answer names."""
    if confidence is None or answer.stage is not confidence.chosen:
        return None
    return confidence
