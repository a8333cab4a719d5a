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
at almost every step (same speed as the stock chain there). ``tests/model/test_runtime.py`` checks
the text is identical to llama-cpp-python's ``create_completion`` with the same grammar.

Internals used (llama-cpp-python 0.3.36 ctypes bindings of llama.h): ``llama_sampler_init_grammar``,
``llama_sampler_apply`` on a ``llama_token_data_array``, ``llama_sampler_accept``,
``llama_sampler_reset``, ``llama_sampler_free``, ``llama_get_logits_ith``, ``llama_vocab_is_eog``;
and ``Llama.eval`` for each accepted token.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Callable

import llama_cpp
import numpy as np

from .stage_confidence import AnswerScanner, StageDistribution, StageTally

TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])   # llama_token_data
assert TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)

__all__ = ["GrammarGuide", "StageProbe", "Decoded", "greedy_decode"]


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
        """True when the grammar, in its present state, allows ``token`` next (one-token check).

        Parameters
        ----------
        token : int
            Token id in the model's vocabulary.

        Returns
        -------
        bool
            Whether the grammar leaves the token's logit finite; the grammar state is unchanged.
        """
        self._one["id"] = token
        self._one["logit"] = 0.0
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(self._array(self._one)))
        return bool(np.isfinite(self._one["logit"][0]))

    def best_allowed(self, logits: np.ndarray) -> int | None:
        """The highest-logit token the grammar allows (first on ties): a full pass.

        Parameters
        ----------
        logits : numpy.ndarray
            One logit per vocabulary token (``n_vocab`` floats).

        Returns
        -------
        int or None
            The token id, or None when the grammar allows no token. Adds one to ``full_passes``.
        """
        self.full_passes += 1
        self._all["logit"] = logits
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(self._array(self._all)))
        masked = self._all["logit"]
        token = int(np.argmax(masked))
        return token if np.isfinite(masked[token]) else None

    def masked(self, logits: np.ndarray) -> np.ndarray:
        """A copy of ``logits`` with every token the grammar refuses set to -inf (a full pass).

        Parameters
        ----------
        logits : numpy.ndarray
            One logit per vocabulary token (``n_vocab`` floats); not changed.

        Returns
        -------
        numpy.ndarray
            float32 logits, -inf where refused. Adds one to ``full_passes``.
        """
        self.full_passes += 1
        self._all["logit"] = logits
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(self._array(self._all)))
        return self._all["logit"].copy()

    def clone(self) -> "GrammarGuide":
        """This grammar in its present state, to follow another branch (``close()`` it after)."""
        other = object.__new__(GrammarGuide)
        other.n_vocab, other._vocab = self.n_vocab, self._vocab
        other._sampler = llama_cpp.llama_sampler_clone(self._sampler)
        if not other._sampler:
            raise RuntimeError("llama.cpp could not copy the grammar state")
        other._all, other._one = self._all, np.zeros(1, dtype=TOKEN_DATA)   # used one at a time
        other.full_passes = 0
        return other

    def accept(self, token: int) -> None:
        """Advance the grammar past ``token``, the token chosen at this step.

        Parameters
        ----------
        token : int
            Token id the grammar allows now (see :meth:`allows`).
        """
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


class StageProbe:
    """The stage probabilities of one greedy answer under its grammar (``core.model.stage_confidence``).

    From the first token that may begin the ``applicable_rules`` key until one stage is left,
    each greedy step takes a full grammar pass (the constrained distribution needs every allowed
    token's logit). There the mass of a token that leaves one stage goes to that stage; the
    greedy token's mass is followed by the greedy answer itself; another token that leaves several
    stages open and holds at least ``min_branch_mass`` is followed with extra decodes:

    - one decode call evaluates the branch token together with the text the grammar then forces
      (``AnswerScanner.forced_text``, tokenised: e.g. ``, "sleep_stage": "`` after an empty rule
      list), with logits for every position; each position's constrained distribution is then
      read in turn, so a wrong guess at the forced tokens costs time, never correctness (the walk
      stops where the guess leaves what the grammar allows, and what follows is a new branch);
    - the grammar state is copied (``llama_sampler_clone``) for each branch;
    - the KV cells written past the answer's position are overwritten by the next
      ``llama.eval``, which removes everything from ``llama.n_tokens`` on: the greedy answer is
      token for token the same as without the probe (tests/model/test_runtime.py checks it).

    At most ``max_extra_decodes`` decode calls per answer; mass not followed is unresolved."""

    MAX_SCANNED = 256     # tokens looked at per step, most probable first (the rest: unresolved)

    def __init__(self, llama, rules, *, min_branch_mass: float = 1e-3, max_extra_decodes: int = 8):
        self.llama = llama
        self.rules = rules
        self.min_branch_mass = float(min_branch_mass)
        self.max_extra_decodes = max(0, int(max_extra_decodes))
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._n_vocab = int(llama.n_vocab())
        self._pieces: dict[int, str] = {}
        self._tails: dict[str, list[int]] = {}
        self.reset()

    def reset(self) -> None:
        self.scanner = AnswerScanner(self.rules)
        self.tally = StageTally()
        self.mass = 1.0
        self.chosen = None
        self.extra_decodes = 0
        self.extra_tokens = 0
        self.full_passes = 0
        self.seconds = 0.0

    @property
    def active(self) -> bool:
        """The next token may decide the stage (and it is not decided yet)."""
        return self.chosen is None and self.scanner.started and len(self.scanner.stages) > 1

    def piece(self, token: int) -> str:
        text = self._pieces.get(token)
        if text is None:
            text = self._pieces[token] = self.llama.detokenize([token]).decode("latin-1")
        return text

    def choose(self, logits: np.ndarray, guide: GrammarGuide) -> int | None:
        """The greedy token of this step (the grammar's best, first on ties; None: none allowed),
        with every other allowed token's mass attributed."""
        t0 = time.perf_counter()
        masked = guide.masked(logits)          # a copy: branches overwrite the context's logits
        self.full_passes += 1
        allowed = np.flatnonzero(np.isfinite(masked))
        if allowed.size == 0:
            return None
        token = int(np.argmax(masked))
        probs = _softmax(masked[allowed])
        p_token = float(probs[np.searchsorted(allowed, token)])
        pending: list = []
        self._spread(allowed, probs, self.mass, self.scanner, guide, token, pending, 0)
        n0 = int(self.llama.n_tokens)
        for _depth, t, m, branch, g in pending:
            self._follow(t, m, branch, g)
            self.llama.n_tokens = n0
        after = self.scanner.copy().feed(self.piece(token)).stages
        if len(after) == 1:
            self.tally.add(after, self.mass * p_token)
            (self.chosen,) = after
        elif not after:                        # cannot happen for a grammar-allowed token
            self.tally.unresolved += self.mass * p_token
        self.mass *= p_token
        self.seconds += time.perf_counter() - t0
        return token

    def advance(self, token: int) -> None:
        """``token`` was accepted into the answer."""
        self.scanner.feed(self.piece(token))

    def result(self) -> StageDistribution | None:
        return self.tally.result(self.chosen, self.mass if self.chosen is not None else 0.0,
                                 extra_decodes=self.extra_decodes, full_passes=self.full_passes,
                                 seconds=self.seconds)

    # -- branches -----------------------------------------------------------------------
    def _spread(self, allowed, probs, mass, scanner, guide, skip, pending, depth) -> None:
        """Attribute the mass of every allowed token but ``skip``: to its stage when it leaves
        one, to ``pending`` (to be followed) when it leaves several and is heavy enough."""
        masses = probs * mass
        order = np.argsort(-masses, kind="stable")
        for rank, i in enumerate(order):
            t, m = int(allowed[i]), float(masses[i])
            if t == skip:
                continue
            if rank >= self.MAX_SCANNED or m < 1e-12:
                rest = order[rank:]
                left = float(masses[rest].sum())
                if skip is not None and skip in allowed[rest]:
                    left -= float(masses[np.searchsorted(allowed, skip)])
                self.tally.unresolved += max(0.0, left)
                return
            if llama_cpp.llama_vocab_is_eog(self._vocab, t):
                self.tally.unresolved += m     # the grammar allows an end only once complete
                continue
            branch = scanner.copy().feed(self.piece(t))
            stages = branch.stages
            if len(stages) == 1:
                self.tally.add(stages, m)
            elif stages and m >= self.min_branch_mass:
                pending.append((depth, t, m, branch, guide))
            else:                              # too light to follow (or, never: not allowed)
                self.tally.unresolved += m

    def _tail(self, scanner: AnswerScanner) -> list[int]:
        text = scanner.forced_text()
        if not text:
            return []
        tokens = self._tails.get(text)
        if tokens is None:
            tokens = self._tails[text] = list(self.llama.tokenize(text.encode("utf-8"),
                                                                  add_bos=False, special=False))
        return tokens

    def _decode(self, tokens: list[int], n_past: int) -> np.ndarray:
        """Evaluate ``tokens`` from position ``n_past`` on; the logits after each, copied."""
        llama = self.llama
        llama._ctx.kv_cache_seq_rm(-1, n_past, -1)
        llama._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
        llama._ctx.decode(llama._batch)
        rows = np.empty((len(tokens), self._n_vocab), dtype=np.float32)
        for i in range(len(tokens)):
            pointer = llama_cpp.llama_get_logits_ith(llama.ctx, i)
            rows[i] = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        return rows

    def _follow(self, token: int, mass: float, scanner: AnswerScanner, guide: GrammarGuide) -> None:
        """Follow the branch that writes ``token`` at the current position (``llama.n_tokens``;
        ``scanner`` has read it, ``guide`` has not) and attribute its mass."""
        llama = self.llama
        n0 = int(llama.n_tokens)
        room = min(int(llama.n_ctx()) - n0 - 1, int(llama.n_batch))
        if self.extra_decodes >= self.max_extra_decodes or room < 1:
            self.tally.unresolved += mass
            return
        batch = ([token] + self._tail(scanner))[:room]
        self.extra_decodes += 1
        self.extra_tokens += len(batch)
        guides: list[GrammarGuide] = []
        pending: list = []
        try:
            rows = self._decode(batch, n0)
            g = guide.clone()
            guides.append(g)
            g.accept(token)
            m = mass
            for j in range(len(batch)):
                masked = g.masked(rows[j])
                self.full_passes += 1
                allowed = np.flatnonzero(np.isfinite(masked))
                if allowed.size == 0:
                    self.tally.unresolved += m
                    break
                probs = _softmax(masked[allowed])
                nxt = batch[j + 1] if j + 1 < len(batch) else None
                if nxt is not None and not np.isfinite(masked[nxt]):
                    nxt = None                 # the guessed text is not what the grammar allows
                self._spread(allowed, probs, m, scanner, g, nxt, pending, j)
                if nxt is None:
                    break
                m *= float(probs[np.searchsorted(allowed, nxt)])
                scanner = scanner.copy().feed(self.piece(nxt))
                stages = scanner.stages
                if len(stages) == 1:
                    self.tally.add(stages, m)
                    break
                if not stages:                 # cannot happen for a grammar-allowed token
                    self.tally.unresolved += m
                    break
                g = g.clone()
                guides.append(g)
                g.accept(nxt)
            # the deepest first: each evaluates from its own position on, leaving the cells
            # of the shallower ones' prefixes as they are
            for depth, t, mt, sc, gt in sorted(pending, key=lambda item: -item[0]):
                llama.n_tokens = n0 + depth + 1
                self._follow(t, mt, sc, gt)
        finally:
            llama.n_tokens = n0
            for g in guides:
                g.close()


def _softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    x = np.exp(x - x.max())
    return x / x.sum()


@dataclass
class Decoded:
    tokens: list[int]
    finish_reason: str          # "stop": end of generation; "length": max_tokens reached;
                                # "interrupted": ``stop()`` said so (the tokens are partial)
    stage: StageDistribution | None = None     # with a StageProbe: the stage probabilities


def greedy_decode(llama, max_tokens: int, guide: GrammarGuide | None = None,
                  probe: StageProbe | None = None,
                  stop: Callable[[], bool] | None = None) -> Decoded:
    """Generate from the logits of the last evaluated token, greedily, under ``guide``.

    The KV cache and ``llama.n_tokens`` must hold the prompt. Each accepted token is evaluated
    with ``llama.eval``, except the last (as llama-cpp-python's own generator does). With a
    ``probe`` (and a guide) the stage probabilities are computed on the way; the tokens are the
    same as without.

    Parameters
    ----------
    llama : llama_cpp.Llama
        The model, its KV cache holding the prompt.
    max_tokens : int
        New tokens at most.
    guide : GrammarGuide, optional
        The answer grammar (None: free text).
    probe : StageProbe, optional
        Computes the stage probabilities on the way (needs a guide).
    stop : callable, optional
        Asked before each token; when it returns True decoding ends at once with the finish
        reason "interrupted" (the epoch on screen preempting a background request).

    Returns
    -------
    Decoded
        The tokens, why decoding ended, and the stage probabilities (with a probe).
    """
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    n_vocab = int(llama.n_vocab())
    if guide is not None:
        guide.reset()
    if guide is None:
        probe = None
    if probe is not None:
        probe.reset()
    tokens: list[int] = []

    def done(reason: str) -> Decoded:
        return Decoded(tokens, reason, probe.result() if probe is not None else None)

    for step in range(max(0, int(max_tokens))):
        if stop is not None and stop():
            return done("interrupted")
        if step:
            llama.eval([tokens[-1]])
        pointer = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(n_vocab,))
        if probe is not None and probe.active:
            token = probe.choose(logits, guide)
            if token is None:
                return done("stop")
        else:
            token = int(np.argmax(logits))
            if guide is not None and not guide.allows(token):
                token = guide.best_allowed(logits)
                if token is None:
                    return done("stop")
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            return done("stop")
        if guide is not None:
            guide.accept(token)
        if probe is not None:
            probe.advance(token)
        tokens.append(token)
    return done("length")
