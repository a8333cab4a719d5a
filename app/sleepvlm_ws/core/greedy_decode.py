"""Greedy decoding under a GBNF grammar, checking the best token first.

llama-cpp-python's sampler chain applies the grammar to every one of the ~152,000 candidate
tokens at every step before the greedy pick (15-80 ms a token on a laptop, more than the
tiny model's own forward pass). llama.cpp's own ``common_sampler`` avoids that: it takes the
best token first and only if the grammar rejects it applies the grammar to all candidates and
picks again. The result is the same token: greedy takes the highest logit among the tokens
the grammar allows, and if the overall best is allowed it is that token. The grammar judges
each candidate on its own (an end-of-generation token only once the grammar is complete), so
checking one candidate gives the same verdict as checking it among all.

A model that learnt the answer format rarely needs the full pass; random test weights need it
at almost every step (same speed as the stock chain there). ``tests/test_runtime.py`` checks
the text is identical to llama-cpp-python's ``create_completion`` with the same grammar.

Internals used (llama-cpp-python 0.3.36 ctypes bindings of llama.h): ``llama_sampler_init_grammar``,
``llama_sampler_apply`` on a ``llama_token_data_array``, ``llama_sampler_accept``,
``llama_sampler_reset``, ``llama_sampler_free``, ``llama_get_logits_ith``, ``llama_vocab_is_eog``;
and ``Llama.eval`` for each accepted token.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

import llama_cpp

TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])   # llama_token_data
assert TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)

__all__ = ["GrammarGuide", "Decoded", "greedy_decode"]


class GrammarGuide:
    """One parsed grammar for one model's vocabulary; ``reset()`` before each answer."""

    def __init__(self, llama, gbnf: str, root: str = "root"):
        self.n_vocab = int(llama.n_vocab())
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, gbnf.encode("utf-8"),
                                                              root.encode("utf-8"))
        if not self._sampler:
            raise ValueError("llama.cpp rejected the grammar")
        self._all = np.zeros(self.n_vocab, dtype=TOKEN_DATA)
        self._all["id"] = np.arange(self.n_vocab, dtype=np.int32)
        self._one = np.zeros(1, dtype=TOKEN_DATA)
        self.full_passes = 0

    @staticmethod
    def _array(data: np.ndarray) -> llama_cpp.llama_token_data_array:
        return llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p), size=data.size,
            selected=-1, sorted=False)

    def reset(self) -> None:
        llama_cpp.llama_sampler_reset(self._sampler)
        self.full_passes = 0

    def allows(self, token: int) -> bool:
        self._one["id"] = token
        self._one["logit"] = 0.0
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(self._array(self._one)))
        return bool(np.isfinite(self._one["logit"][0]))

    def best_allowed(self, logits: np.ndarray) -> int | None:
        """The highest-logit token the grammar allows (first on ties); None if none is."""
        self.full_passes += 1
        self._all["logit"] = logits
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(self._array(self._all)))
        masked = self._all["logit"]
        token = int(np.argmax(masked))
        return token if np.isfinite(masked[token]) else None

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        if self._sampler:
            llama_cpp.llama_sampler_free(self._sampler)
            self._sampler = None

    def __del__(self):  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class Decoded:
    tokens: list[int]
    finish_reason: str          # "stop": end of generation; "length": max_tokens reached


def greedy_decode(llama, max_tokens: int, guide: GrammarGuide | None = None) -> Decoded:
    """Generate from the logits of the last evaluated token, greedily, under ``guide``.

    The KV cache and ``llama.n_tokens`` must hold the prompt. Each accepted token is evaluated
    with ``llama.eval``, except the last (as llama-cpp-python's own generator does)."""
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    n_vocab = int(llama.n_vocab())
    if guide is not None:
        guide.reset()
    tokens: list[int] = []
    for step in range(max(0, int(max_tokens))):
        if step:
            llama.eval([tokens[-1]])
        pointer = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(n_vocab,))
        token = int(np.argmax(logits))
        if guide is not None and not guide.allows(token):
            token = guide.best_allowed(logits)
            if token is None:
                return Decoded(tokens, "stop")
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            return Decoded(tokens, "stop")
        if guide is not None:
            guide.accept(token)
        tokens.append(token)
    return Decoded(tokens, "length")
