"""Answer grammars on the lab server: each distinct grammar is checked once in a child process
(a grammar llama.cpp cannot parse can crash it), and its parsed samplers are kept for reuse,
for the last ``MAX_GRAMMARS`` grammars."""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..model.grammar import validate_grammar_in_child

MAX_GRAMMARS = 8                # distinct answer grammars whose parsed samplers are kept


class GrammarPool:
    """Verdicts on grammars (thread-safe) and free samplers per grammar (engine thread only)."""

    def __init__(self, llama):
        self._llama = llama
        self._lock = threading.Lock()
        self._verdicts: OrderedDict[str, str | None] = OrderedDict()
        self._free: OrderedDict[str, list] = OrderedDict()   # grammar -> free samplers

    def problem(self, grammar: str) -> str | None:
        """None when llama.cpp can parse ``grammar``, else one line saying why not."""
        with self._lock:
            known = grammar in self._verdicts
            problem = self._verdicts.get(grammar)
        if not known:
            ok, message = validate_grammar_in_child(grammar)
            problem = None if ok else message
            with self._lock:
                self._verdicts[grammar] = problem
                while len(self._verdicts) > 4 * MAX_GRAMMARS:
                    self._verdicts.popitem(last=False)
        return problem

    def take(self, grammar: str):
        """A reset sampler for ``grammar`` (reused, else parsed); ValueError if llama.cpp
        rejects it."""
        free = self._free.get(grammar)
        if free:
            self._free.move_to_end(grammar)
            guide = free.pop()
        else:
            from ..model.greedy_decode import GrammarGuide  # late: it imports llama.cpp
            guide = GrammarGuide(self._llama, grammar)
        guide.reset()
        return guide

    def give_back(self, grammar: str, guide) -> None:
        """Keep a sampler for reuse: the pools of the last MAX_GRAMMARS grammars."""
        self._free.setdefault(grammar, []).append(guide)
        self._free.move_to_end(grammar)
        while len(self._free) > MAX_GRAMMARS:
            for old in self._free.popitem(last=False)[1]:
                old.close()

    def close(self) -> None:
        for guides in self._free.values():
            for guide in guides:
                guide.close()
        self._free.clear()
