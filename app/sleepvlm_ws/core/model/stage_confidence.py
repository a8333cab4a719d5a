"""The model's probability for each sleep stage, read from its token probabilities under the
answer grammar (no Qt, no llama.cpp: the local decoder and the remote reader both use this).

Where the stage is decided
--------------------------
The answer grammar (``core.model.grammar``) writes ``applicable_rules`` before ``sleep_stage`` and ties
the two together: only rules that may accompany a stage can be listed before it. Once the model
has written ``"N2.1"`` the grammar allows nothing but ``"N2"`` at ``sleep_stage``, so the logits at
the stage field alone would say "100 %" for nearly every answer. The stage is decided earlier,
token by token, wherever the grammar's set of *reachable* stages narrows: at the character of a
rule ID that fixes its stage (``"N"`` keeps every stage open because ``N2.4`` may accompany W, N1,
N3 and R; the ``2`` keeps them open; the ``1`` of ``N2.1`` leaves only N2), at an empty rule list
(then at the stage field itself), and at the stage field's own characters (``N`` then ``1``).

The probability of a stage is therefore the probability, under the grammar-constrained token
distribution (softmax over the logits of the tokens the grammar allows, step by step), that the
answer ends with that stage: the sum over every way of writing the rest of the answer. It is
computed exactly along the greedy answer and, where the model gave weight to another token that
still leaves several stages open, by following that branch too (``core.model.greedy_decode.StageProbe``
evaluates it with extra decodes; a remote server's ``top_logprobs`` cannot be followed). Mass that
was not followed (a branch below ``min_branch_mass`` or beyond the decode budget, or outside a
server's top-k list) is *unresolved*: the five probabilities are normalised over the resolved
mass and the unresolved share is reported beside them (``StageDistribution.unresolved``).
When more than ``MAX_UNRESOLVED`` (20 %) of the mass is unresolved the probabilities are not
known well enough to show: the answer then has none (None), as an answer from a server without
token probabilities has none. (Random test weights spread their mass over thousands of
whitespace variants and always end here; a trained model leaves well under 1 % unresolved.)

The greedy stage is the one the greedy *path* reaches; it is usually, not always, the stage of
highest probability (two tokens leading to W can together outweigh the single best token, which
leads to N2). ``StageDistribution.path_probability`` is the greedy path's own share, a lower
bound of the chosen stage's probability.

:class:`AnswerScanner` is the grammar's rule/stage coupling in plain Python: fed the answer's text
so far, it says which stages the answer can still end with (empty when the text has left the
grammar's language). It follows ``grammar.answer_gbnf`` exactly, except that it does not count
whitespace (the grammar allows at most 12 blanks in a row; a blank never decides a stage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from ..base.probabilities import probabilities_to_json
from ..base.stages import SLEEP_STAGES, Stage
from .grammar import rules_by_stage

ALL_STAGES = frozenset(SLEEP_STAGES)
MAX_UNRESOLVED = 0.2      # more of the mass than this not followed to a stage: no probabilities
RULES_KEY_TEXT = "applicable_rules"
STAGE_KEY_TEXT = "sleep_stage"
_WS = " \t\n\r"
_STAGE_VALUES = {s.value: s for s in SLEEP_STAGES}

__all__ = ["AnswerScanner", "StageDistribution", "StageTally", "stage_rule_table",
           "distribution_from_logprobs", "ALL_STAGES", "MAX_UNRESOLVED"]


def stage_rule_table(rule_ids: Iterable[str], catalogue=None) -> dict[Stage, frozenset[str]]:
    """Rule IDs the answer grammar lets each stage list (``grammar.answer_gbnf``'s own table)."""
    return {stage: frozenset(ids) for stage, ids in rules_by_stage(rule_ids, catalogue).items()}


class AnswerScanner:
    """Which stages an answer can still end with, given its text so far (see the module doc).

    ``feed(text)`` consumes characters (bytes decoded as Latin-1 are fine: quotes, backslashes
    and the verdict's characters are ASCII); ``copy()`` is cheap. ``stages`` is a frozenset of
    ``Stage``; ``started`` turns true once the text may be writing the ``applicable_rules`` key
    (before it no token can decide the stage); ``decided`` once one stage is left."""

    __slots__ = ("_rules", "_limits", "_ids", "state", "_base", "_partial", "_buf", "_count",
                 "_in_str", "_esc", "_expect_key", "_key", "_last")

    def __init__(self, rules: Mapping[Stage, frozenset[str]]):
        self._rules = {s: frozenset(rules.get(s, ())) for s in SLEEP_STAGES}
        self._limits = {s: len(ids) for s, ids in self._rules.items()}
        self._ids = tuple(sorted(set().union(*self._rules.values())))
        self.state = "pre"
        self._base = ALL_STAGES          # what the finished rules, the rule count and stage allow
        self._partial = ALL_STAGES       # what the rule ID or stage being written allows
        self._buf = ""
        self._count = 0
        self._in_str = self._esc = self._expect_key = False
        self._key: str | None = None
        self._last = ""

    def copy(self) -> "AnswerScanner":
        other = object.__new__(AnswerScanner)
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    @property
    def stages(self) -> frozenset:
        return self._base & self._partial

    @property
    def started(self) -> bool:
        if self.state != "pre":
            return True
        return self._in_str and self._key is not None and RULES_KEY_TEXT.startswith(self._key)

    @property
    def decided(self) -> bool:
        return len(self.stages) == 1

    @property
    def valid(self) -> bool:
        return self.state != "invalid"

    def feed(self, text: str) -> "AnswerScanner":
        for ch in text:
            if self.state == "invalid":
                break
            self._char(ch)
            self._last = ch
        return self

    def forced_text(self) -> str:
        """The text the grammar leaves no choice about from here to the next choice that may
        decide the stage, written as training wrote it (``format_answer``: ``", "`` and ``": "``);
        "" where the next character is itself a choice. A guess at what the model writes next,
        used only to evaluate several tokens at once (``greedy_decode.StageProbe``)."""
        state, last = self.state, self._last
        if state == "key_done":
            return ': ['
        if state == "colon":
            return '[' if last in _WS else ' ['
        if state == "after_comma":
            return '"' if last in _WS else ' "'
        if state == "list_done":
            return ', "sleep_stage": "'
        if state == "key2_wait":
            return '"sleep_stage": "' if last in _WS else ' "sleep_stage": "'
        if state == "key2":
            return STAGE_KEY_TEXT[len(self._buf):] + '": "'
        if state == "key2_done":
            return ': "'
        if state == "stage_wait":
            return '"' if last in _WS else ' "'
        if state in ("rule", "stage"):
            options = ([r for r in self._ids if r.startswith(self._buf)] if state == "rule"
                       else [v for v in _STAGE_VALUES if v.startswith(self._buf)])
            if len(options) == 1:
                return options[0][len(self._buf):] + '"'
            common = _common_prefix(options)
            return common[len(self._buf):]
        return ""

    # -- the state machine --------------------------------------------------------------
    def _fail(self) -> None:
        self.state = "invalid"
        self._base = self._partial = frozenset()

    def _expect(self, got: str, want: str, then: str) -> None:
        if got == want:
            self.state = then
        else:
            self._fail()

    def _char(self, ch: str) -> None:
        state = self.state
        if state == "pre":
            self._pre(ch)
            return
        if ch in _WS and state not in ("rule", "key2", "stage"):
            return                                          # blanks between tokens
        if state == "key_done":
            self._expect(ch, ":", "colon")
        elif state == "colon":
            self._expect(ch, "[", "list_open")
        elif state == "list_open":
            if ch == "]":
                self.state = "list_done"
            elif ch == '"':
                self._begin_rule()
            else:
                self._fail()
        elif state == "rule":
            self._rule_char(ch)
        elif state == "after_rule":
            if ch == ",":                                   # another rule must follow
                self.state = "after_comma"
                self._base = self._base & frozenset(s for s in SLEEP_STAGES
                                                    if self._count + 1 <= self._limits[s])
                if not self.stages:
                    self._fail()
            elif ch == "]":
                self.state = "list_done"
            else:
                self._fail()
        elif state == "after_comma":
            self._begin_rule() if ch == '"' else self._fail()
        elif state == "list_done":
            self._expect(ch, ",", "key2_wait")
        elif state == "key2_wait":
            if ch == '"':
                self.state, self._buf = "key2", ""
            else:
                self._fail()
        elif state == "key2":
            if ch == '"':
                self._expect(self._buf, STAGE_KEY_TEXT, "key2_done")
            else:
                self._buf += ch
                if not STAGE_KEY_TEXT.startswith(self._buf):
                    self._fail()
        elif state == "key2_done":
            self._expect(ch, ":", "stage_wait")
        elif state == "stage_wait":
            if ch == '"':
                self.state, self._buf = "stage", ""
            else:
                self._fail()
        elif state == "stage":
            self._stage_char(ch)
        elif state == "done":
            self._expect(ch, "}", "closed")
        else:                                               # "closed": nothing may follow
            self._fail()

    def _pre(self, ch: str) -> None:
        """Before the verdict: skip the object's opening and the rationale (a JSON string)."""
        if self._in_str:
            if self._esc:
                self._esc = False
                self._key = None
            elif ch == "\\":
                self._esc = True
                self._key = None
            elif ch == '"':
                self._in_str = False
                if self._key == RULES_KEY_TEXT:
                    self.state = "key_done"
                self._key = None
            elif self._key is not None:
                self._key += ch
                if len(self._key) > len(RULES_KEY_TEXT):
                    self._key = None
        elif ch == '"':
            self._in_str = True
            self._key = "" if self._expect_key else None
            self._expect_key = False
        elif ch in "{,":
            self._expect_key = True
        elif ch not in _WS:
            self._expect_key = False

    def _begin_rule(self) -> None:
        self._count += 1
        self._base = self._base & frozenset(s for s in SLEEP_STAGES
                                            if self._count <= self._limits[s])
        self.state, self._buf = "rule", ""
        self._partial = self._rule_prefix_stages("")
        if not self.stages:
            self._fail()

    def _rule_prefix_stages(self, prefix: str) -> frozenset:
        return frozenset(s for s in SLEEP_STAGES
                         if any(r.startswith(prefix) for r in self._rules[s]))

    def _rule_char(self, ch: str) -> None:
        if ch == '"':
            if self._buf not in self._ids:
                self._fail()
                return
            self._base = self._base & frozenset(s for s in SLEEP_STAGES
                                                if self._buf in self._rules[s])
            self._partial = ALL_STAGES
            self.state = "after_rule"
        else:
            self._buf += ch
            self._partial = self._rule_prefix_stages(self._buf)
        if not self.stages:
            self._fail()

    def _stage_char(self, ch: str) -> None:
        if ch == '"':
            stage = _STAGE_VALUES.get(self._buf)
            if stage is None:
                self._fail()
                return
            self._base = self._base & frozenset((stage,))
            self._partial = ALL_STAGES
            self.state = "done"
        else:
            self._buf += ch
            self._partial = frozenset(s for v, s in _STAGE_VALUES.items() if v.startswith(self._buf))
        if not self.stages:
            self._fail()


def _common_prefix(words: Sequence[str]) -> str:
    if not words:
        return ""
    first, last = min(words), max(words)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


# ----------------------------------------------------------------------------- the tally
@dataclass
class StageTally:
    """Probability mass of the constrained token distribution, as it is attributed."""

    mass: dict[Stage, float] = field(default_factory=lambda: {s: 0.0 for s in SLEEP_STAGES})
    unresolved: float = 0.0

    def add(self, stages: frozenset, amount: float) -> None:
        """``amount`` of mass reached ``stages``: one stage takes it, several leave it unresolved."""
        if len(stages) == 1:
            (stage,) = stages
            self.mass[stage] += float(amount)
        else:
            self.unresolved += float(amount)

    def result(self, chosen: Stage | None, path_probability: float, **extra) -> "StageDistribution | None":
        total = sum(self.mass.values())
        if chosen is None or not total > 0 or not math.isfinite(total):
            return None
        if self.unresolved > MAX_UNRESOLVED:
            return None
        probabilities = {s: self.mass[s] / total for s in SLEEP_STAGES}
        return StageDistribution(probabilities, chosen, unresolved=min(1.0, max(0.0, self.unresolved)),
                                 path_probability=float(path_probability), **extra)


@dataclass(frozen=True)
class StageDistribution:
    """The model's stage probabilities for one answer (sum 1 over ``SLEEP_STAGES``).

    ``chosen``: the stage the greedy answer named; ``unresolved``: the share of the probability
    mass that was not followed to a stage (the five are normalised without it);
    ``path_probability``: the greedy path's own mass from the first deciding token on;
    ``extra_decodes``: single-token evaluations spent on branches not taken."""

    probabilities: dict[Stage, float]
    chosen: Stage
    unresolved: float = 0.0
    path_probability: float = 0.0
    extra_decodes: int = 0
    full_passes: int = 0
    seconds: float = 0.0

    @property
    def probability(self) -> float:
        """The chosen stage's probability."""
        return self.probabilities[self.chosen]

    @property
    def most_likely(self) -> Stage:
        return max(SLEEP_STAGES, key=lambda s: self.probabilities[s])

    def as_json(self) -> dict[str, float]:
        return probabilities_to_json(self.probabilities)


# --------------------------------------------------------------- from a server's logprobs
def distribution_from_logprobs(content: Sequence[Mapping], rules: Mapping[Stage, frozenset[str]],
                               chosen: Stage | None) -> StageDistribution | None:
    """Stage probabilities from an OpenAI ``choices[0].logprobs.content`` list (each token with
    its ``logprob`` and ``top_logprobs``), renormalised at each step over the listed tokens that
    the answer grammar allows there. Branches other than the answer's own cannot be followed:
    their mass is attributed when the token alone decides the stage, else left unresolved.
    None when the list is missing, malformed or the answer's stage is never decided."""
    if chosen is None or not isinstance(content, Sequence) or not content:
        return None
    scanner = AnswerScanner(rules)
    tally = StageTally()
    mass, decided = 1.0, False
    for entry in content:
        if not isinstance(entry, Mapping):
            return None
        text = _token_text(entry)
        logprob = entry.get("logprob")
        if text is None or not _finite(logprob):
            return None
        if scanner.started and not scanner.decided:
            options = {}
            for alt in entry.get("top_logprobs") or ():
                alt_text = _token_text(alt) if isinstance(alt, Mapping) else None
                if alt_text is not None and _finite(alt.get("logprob")):
                    options.setdefault(alt_text, float(alt["logprob"]))
            options.setdefault(text, float(logprob))
            reach = {t: scanner.copy().feed(t).stages for t in options}
            allowed = {t: lp for t, lp in options.items() if reach[t]}
            if text not in allowed:
                return None                       # the answer left the grammar
            top = max(allowed.values())
            weights = {t: math.exp(lp - top) for t, lp in allowed.items()}
            total = sum(weights.values())
            for t, w in weights.items():
                if t != text:
                    tally.add(reach[t], mass * w / total)
            mass *= weights[text] / total
        scanner.feed(text)
        if not scanner.valid:
            return None
        if scanner.started and scanner.decided:
            (stage,) = scanner.stages
            if stage is not chosen:
                return None
            tally.add(scanner.stages, mass)
            decided = True
            break
    if not decided:
        return None
    return tally.result(chosen, mass)


def _token_text(entry: Mapping) -> str | None:
    raw = entry.get("bytes")
    if isinstance(raw, list) and raw and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw).decode("latin-1")
    token = entry.get("token")
    return token if isinstance(token, str) else None


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
