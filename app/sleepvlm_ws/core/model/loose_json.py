"""A forgiving JSON reader for what language models really print.

Strict JSON is read by the standard library first; only when that fails does the loose reader
take over. It accepts smart and single quotes, trailing or missing commas, unquoted words,
unescaped quotes inside strings, raw control characters and text cut off at the end, and it
names every such repair so the caller can say "parsed after repair". It runs in linear time
(simple regex character classes only, bounded nesting) and never raises on any input.

Objects come back as :class:`ObjectPairs` (key/value pairs in printed order, duplicates kept), strings
cut off by the end of the text as :class:`CutString`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterator

MAX_DEPTH = 32  # deeper nesting is not an answer; refuse it rather than recurse
MAX_CANDIDATES = 64  # places where a value may start that are tried before giving up
SCAN_BUDGET_FACTOR = 8  # total characters scanned over all candidates, in text lengths


class CutString(str):
    """A string that the end of the text cut off before its closing quote."""


class ObjectPairs(list):
    """A JSON object as a list of (key, value) pairs, in printed order, duplicates kept."""


@dataclass
class ReadValue:
    """One value read from the text: where it starts and ends, and what reading it took."""

    value: object
    start: int
    end: int
    strict: bool  # read by the standard JSON decoder, nothing repaired
    truncated: bool = False  # the text ended inside the value
    repairs: list[str] = field(default_factory=list)


class _Unreadable(Exception):
    """No value can be read here (the candidate is abandoned, never seen by callers)."""


_WS = re.compile(r"[ \t\r\n\f\v\u00a0\u2028\u2029\ufeff]*")
_OPENERS = re.compile(r"[{\[]")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-]*")
_KEY_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_CONTROL = re.compile(r"[\x00-\x1f]")

_DOUBLE_SMART = "\u201c\u201d\u201e\u201f"  # “ ” „ ‟
_SINGLE_SMART = "\u2018\u2019\u201a\u201b"  # ‘ ’ ‚ ‛
_QUOTES = '"\'' + _DOUBLE_SMART + _SINGLE_SMART
_AFTER_STRING = ",:=}]" + _QUOTES  # what may follow a closing quote

# opening quote -> (characters that may close it, repair to record)
_STRING_KINDS: dict[str, tuple[str, str | None]] = {'"': ('"', None), "'": ("'", "single_quotes")}
for _q in _DOUBLE_SMART:
    _STRING_KINDS[_q] = ('"' + _DOUBLE_SMART, "smart_quotes")
for _q in _SINGLE_SMART:
    _STRING_KINDS[_q] = ("'" + _SINGLE_SMART, "smart_quotes")
_WS_CHARS = " \t\r\n\f\v\u00a0\u2028\u2029\ufeff"


def _plain_run(closers: str) -> re.Pattern:
    """String content up to a backslash or a quote that really closes the string.

    A quote counts as closing only when what follows it (after blanks) may follow a string;
    any other quote is unescaped content. One pass, no backtracking: each character is either
    an ordinary one or a quote whose look-ahead fails, and blank runs after quotes are disjoint.
    """
    q = re.escape(closers)
    after = re.escape(_AFTER_STRING)
    ws = re.escape(_WS_CHARS)
    return re.compile(f"(?:[^{q}\\\\]|[{q}](?![{ws}]*(?:[{after}]|\\Z)))+")


_PLAIN_RUN = {closers: _plain_run(closers) for closers, _ in _STRING_KINDS.values()}

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS = {"true": True, "false": False, "null": None}
_PY_LITERALS = {"True": True, "False": False, "None": None}


class _LooseReader:
    def __init__(self, text: str):
        self.s = text
        self.n = len(text)
        self.repairs: list[str] = []
        self.truncated = False
        self.furthest = 0

    def repair(self, name: str) -> None:
        if name not in self.repairs:
            self.repairs.append(name)

    def ws(self, i: int) -> int:
        return _WS.match(self.s, i).end()

    def at_end(self, i: int) -> bool:
        if i >= self.n:
            self.truncated = True
            self.furthest = self.n
            return True
        return False

    # -- values -------------------------------------------------------------------------------
    def value(self, i: int, depth: int) -> tuple[object, int]:
        if depth > MAX_DEPTH:
            raise _Unreadable
        i = self.ws(i)
        if self.at_end(i):
            return CutString(""), i
        c = self.s[i]
        if c == "{":
            return self.obj(i, depth)
        if c == "[":
            return self.array(i, depth)
        if c in _STRING_KINDS:
            return self.string(i)
        return self.bare(i)

    def obj(self, i: int, depth: int) -> tuple[ObjectPairs, int]:
        pairs, i = ObjectPairs(), i + 1
        need_item, after_comma = True, False
        while True:
            i = self.ws(i)
            if self.at_end(i):
                return pairs, i
            c = self.s[i]
            if c == "}":
                if after_comma:
                    self.repair("trailing_comma")
                return pairs, i + 1
            if c == ",":
                if need_item:
                    self.repair("extra_comma")
                need_item, after_comma, i = True, True, i + 1
                continue
            if not need_item:
                self.repair("missing_comma")
            if c in _STRING_KINDS:
                key, i = self.string(i)
                if isinstance(key, CutString):
                    return pairs, i
            else:
                m = _KEY_WORD.match(self.s, i)
                if not m:
                    raise _Unreadable
                key, i = m.group(), m.end()
                self.repair("unquoted_key")
            i = self.ws(i)
            if self.at_end(i):
                return pairs, i
            if self.s[i] == "=":
                self.repair("equals_for_colon")
            elif self.s[i] != ":":
                raise _Unreadable
            i = self.ws(i + 1)
            if self.at_end(i):
                return pairs, i
            value, i = self.value(i, depth + 1)
            pairs.append((str(key), value))
            if self.truncated:
                return pairs, i
            need_item, after_comma = False, False

    def array(self, i: int, depth: int) -> tuple[list, int]:
        items: list = []
        i += 1
        need_item, after_comma = True, False
        while True:
            i = self.ws(i)
            if self.at_end(i):
                return items, i
            c = self.s[i]
            if c == "]":
                if after_comma:
                    self.repair("trailing_comma")
                return items, i + 1
            if c == ",":
                if need_item:
                    self.repair("extra_comma")
                need_item, after_comma, i = True, True, i + 1
                continue
            if c == "}":
                raise _Unreadable
            if not need_item:
                self.repair("missing_comma")
            value, i = self.value(i, depth + 1)
            items.append(value)
            if self.truncated:
                return items, i
            need_item, after_comma = False, False

    def string(self, i: int) -> tuple[str, int]:
        s = self.s
        closers, kind_repair = _STRING_KINDS[s[i]]
        if kind_repair:
            self.repair(kind_repair)
        plain = _PLAIN_RUN[closers]
        chunks: list[str] = []
        i += 1
        while True:
            m = plain.match(s, i)
            if m:
                chunk = m.group()
                if _CONTROL.search(chunk):
                    self.repair("control_characters")
                if any(q in chunk for q in closers):
                    self.repair("unescaped_quote")
                chunks.append(chunk)
                i = m.end()
            if self.at_end(i):
                return CutString("".join(chunks)), i
            if s[i] == "\\":
                text, i = self.escape(i)
                if text is None:  # cut off inside the escape
                    return CutString("".join(chunks)), i
                chunks.append(text)
                continue
            # the plain run stops only at a backslash or at a quote that closes the string
            self.furthest = max(self.furthest, i + 1)
            return "".join(chunks), i + 1

    def escape(self, i: int) -> tuple[str | None, int]:
        s = self.s
        if self.at_end(i + 1):
            return None, self.n
        e = s[i + 1]
        if e in _ESCAPES:
            return _ESCAPES[e], i + 2
        if e != "u":
            self.repair("invalid_escape")
            return e, i + 2
        if i + 6 > self.n:
            self.at_end(self.n)
            return None, self.n
        m = _HEX4.match(s, i + 2)
        if not m:
            self.repair("invalid_escape")
            return "u", i + 2
        code = int(m.group(), 16)
        if 0xD800 <= code < 0xDC00:  # high surrogate: needs a low one right after
            low = _HEX4.match(s, i + 8) if s.startswith("\\u", i + 6) else None
            if low and 0xDC00 <= int(low.group(), 16) < 0xE000:
                pair = 0x10000 + ((code - 0xD800) << 10) + (int(low.group(), 16) - 0xDC00)
                return chr(pair), i + 12
            self.repair("lone_surrogate")
            return "\ufffd", i + 6
        if 0xDC00 <= code < 0xE000:
            self.repair("lone_surrogate")
            return "\ufffd", i + 6
        return chr(code), i + 6

    def bare(self, i: int) -> tuple[object, int]:
        s = self.s
        m = _NUMBER.match(s, i)
        if m and not (m.end() < self.n and (s[m.end()].isalnum() or s[m.end()] in "_.")):
            text = m.group()
            try:
                number = float(text) if any(ch in text for ch in ".eE") else int(text)
            except ValueError:  # pragma: no cover - the regex admits only numbers
                raise _Unreadable from None
            return number, m.end()
        m = _WORD.match(s, i)
        if not m:
            raise _Unreadable
        word = m.group()
        if word in _LITERALS:
            return _LITERALS[word], m.end()
        if word in _PY_LITERALS:
            self.repair("python_literals")
            return _PY_LITERALS[word], m.end()
        self.repair("unquoted_value")
        if self.at_end(m.end()):
            return CutString(word), m.end()
        return word, m.end()


def _strict_decoder() -> json.JSONDecoder:
    return json.JSONDecoder(object_pairs_hook=ObjectPairs, strict=True)


_DECODER = _strict_decoder()


def read_value_at(text: str, pos: int) -> tuple[ReadValue | None, int]:
    """Read one value starting at ``text[pos]``.

    Returns the value (None when nothing readable starts there) and how far the reading looked.
    """
    looked = pos + 1
    try:
        value, end = _DECODER.raw_decode(text, pos)
        return ReadValue(value, pos, end, strict=True), end
    except json.JSONDecodeError as exc:
        looked = max(looked, exc.pos)
    except (ValueError, RecursionError):
        pass
    reader = _LooseReader(text)
    try:
        value, end = reader.value(pos, 0)
    except (_Unreadable, RecursionError):
        return None, max(reader.furthest, looked)
    if reader.truncated:
        end = len(text)
    return ReadValue(value, pos, end, strict=False, truncated=reader.truncated,
                 repairs=list(reader.repairs)), end


def iter_values(text: str, start: int = 0) -> Iterator[ReadValue]:
    """Every object or array that can be read from ``text`` from ``start`` on, in order.

    Each ``{`` or ``[`` is a candidate (including those inside values already returned, so a
    wrapper object is followed by what it wraps). Work is bounded: at most ``MAX_CANDIDATES``
    places are tried and about ``SCAN_BUDGET_FACTOR`` times the text is scanned in all.
    """
    budget = SCAN_BUDGET_FACTOR * max(len(text), 1024)
    for tried, m in enumerate(_OPENERS.finditer(text, start)):
        if tried >= MAX_CANDIDATES or budget <= 0:
            return
        found, looked_to = read_value_at(text, m.start())
        budget -= max(looked_to - m.start(), 1)
        if found is not None:
            yield found
