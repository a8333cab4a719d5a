"""A model's answer for one epoch: stage, cited rules and rationale, read from what it printed.

SleepVLM was trained to print one JSON object with, in this order, ``reasoning_text`` (the
rationale), ``applicable_rules`` (rule IDs) and ``sleep_stage`` (W, N1, N2, N3 or R); the
"coarse" variant leaves out ``reasoning_text``. Real outputs wrap it in code fences, use smart
quotes, leave trailing commas, give the rules as one string or stop mid-answer.

:func:`parse_answer` reads all of that and never raises. It keeps what the model said: a stage
that is not a sleep stage, an unknown rule or a rule that does not fit the stage is kept and
*flagged* (``Answer.flags``), never dropped or "fixed". Every repair needed to read the text is
named in ``Answer.repaired`` so the UI can say "parsed after repair".

Flags (the answer needs a human look; ``Answer.ok`` is False): ``no_json``, ``truncated``,
``top_level_array``, ``multiple_objects``, ``duplicate_key:FIELD``, ``missing_stage``,
``invalid_stage:TEXT``, ``wrong_type:FIELD``, ``missing_rules``, ``unknown_rule:ID``,
``rule_stage_mismatch:ID``, ``too_many_rules``, ``parser_error:TYPE`` (a bug, never expected);
after 32 of them, ``and_more`` (the same cap applies to repairs).

Repairs (read anyway): ``code_fence``, ``surrounding_text``, ``smart_quotes``, ``single_quotes``,
``trailing_comma``, ``extra_comma``, ``missing_comma``, ``unquoted_key``, ``unquoted_value``,
``equals_for_colon``, ``python_literals``, ``unescaped_quote``, ``control_characters``,
``invalid_escape``, ``lone_surrogate``, ``key_normalised``, ``key_alias:KEY``, ``ignored_key:KEY``,
``rules_string``, ``rule_id_normalised``, ``duplicate_rule``, ``incomplete_rule_dropped``,
``stage_normalised``.
"""

from __future__ import annotations

import json
import re
from typing import Iterable, Mapping

from ..base.answer import Answer
from ..base.rules import Rule, load_rules
from ..base.stages import SLEEP_STAGES, Stage, parse_stage
from .loose_json import CutString, ObjectPairs, ReadValue, iter_values

RATIONALE_KEY = "reasoning_text"
RULES_KEY = "applicable_rules"
STAGE_KEY = "sleep_stage"
FIELD_ORDER = (RATIONALE_KEY, RULES_KEY, STAGE_KEY)  # as in training

MAX_RULES = 64  # more cited rules than this is not an answer; the rest is flagged
_SHORT = 24  # longest piece of model text quoted inside a flag
MAX_NOTES = 32  # flags (and repairs) kept per answer; garbage can name thousands of unknown rules
MORE_NOTES = "and_more"

# Other names models give the three fields (compared after lower-casing, '_' for separators).
_KEY_ALIASES = {
    "sleep_stage": STAGE_KEY, "stage": STAGE_KEY, "sleepstage": STAGE_KEY,
    "predicted_stage": STAGE_KEY,
    "applicable_rules": RULES_KEY, "applicable_rule": RULES_KEY, "rules": RULES_KEY,
    "rule_ids": RULES_KEY, "rule": RULES_KEY, "applicablerules": RULES_KEY,
    "reasoning_text": RATIONALE_KEY, "reasoning": RATIONALE_KEY, "rationale": RATIONALE_KEY,
    "reasoningtext": RATIONALE_KEY, "explanation": RATIONALE_KEY,
}
_EXACT_STAGES = {s.value: s for s in SLEEP_STAGES}
_STAGE_FILLER = {"sleep", "stage", "epoch", "the", "is", "score", "scored", "as"}
_FENCE = re.compile(r"`{3,}[ \t]*[A-Za-z0-9_+\-]*")
_RULE_SPLIT = re.compile(r"[,;|/]+|\band\b|&")
_RULE_PREFIX = re.compile(r"^(?:rule|id)[\s:#\-]*", re.IGNORECASE)
_RULE_SEPARATOR = re.compile(r"^([A-Za-z]+\d?)[-_](\d+)$")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _SHORT else text[:_SHORT] + "\u2026"


def _add(items: list[str], item: str) -> None:
    """Add a flag or repair once; past MAX_NOTES, one "and_more" stands for the rest."""
    if item in items:
        return
    if len(items) < MAX_NOTES:
        items.append(item)
    elif items[-1] != MORE_NOTES:
        items.append(MORE_NOTES)


def _as_text(text: object) -> str:
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text).decode("utf-8", errors="replace")
    if text is None:
        return ""
    try:
        return str(text)
    except Exception:  # noqa: BLE001 - an object whose str() fails is just unreadable
        return ""


# -- rule catalogue access -----------------------------------------------------------------------

class _Catalogue:
    """Rule IDs known to the model pack, looked up case-insensitively."""

    def __init__(self, rules: Mapping[str, Rule] | Iterable[str] | None):
        if rules is None:
            rules = load_rules()
        if isinstance(rules, Mapping):
            self.rules: dict[str, Rule | None] = dict(rules)
        else:
            bundled = load_rules()
            self.rules = {str(r): bundled.get(str(r)) for r in rules}
        self.by_upper = {rule_id.upper(): rule_id for rule_id in self.rules}

    def lookup(self, printed: str) -> str | None:
        core = _RULE_PREFIX.sub("", re.sub(r"\s+", "", printed).strip("\"'`*[](){}<>.,;:"))
        hit = self.by_upper.get(core.upper())
        if hit is None:
            m = _RULE_SEPARATOR.match(core)
            if m:
                hit = self.by_upper.get(f"{m.group(1)}.{m.group(2)}".upper())
        return hit

    def fits(self, rule_id: str, stage: Stage) -> bool | None:
        """Whether the rule may accompany the stage; None when the pack says nothing about it."""
        rule = self.rules.get(rule_id)
        return None if rule is None else rule.fits(stage)


# -- reading the fields --------------------------------------------------------------------------

def _read_stage(value: object, answer: Answer) -> None:
    if value is None:
        _add(answer.flags, "missing_stage")
        return
    if isinstance(value, bool) or not isinstance(value, str):
        answer.stage_text = _short(json.dumps(value) if not isinstance(value, ObjectPairs) else "{...}")
        _add(answer.flags, f"wrong_type:{STAGE_KEY}")
        return
    answer.stage_text = str(value)
    if isinstance(value, CutString):  # cut off: "N" might have become N1, N2 or N3
        _add(answer.flags, "missing_stage")
        return
    if value in _EXACT_STAGES:
        answer.stage = _EXACT_STAGES[value]
        return
    stage = _normalise_stage(value)
    if stage is None:
        _add(answer.flags, f"invalid_stage:{_short(value.strip()) or '(empty)'}")
        return
    answer.stage = stage
    _add(answer.repaired, "stage_normalised")


def _normalise_stage(text: str) -> Stage | None:
    if len(text) > 40:
        return None
    plain = " ".join(text.strip().lower().replace("_", " ").split()).strip(" .:;,!\"'`*()[]")
    words = [w for w in re.split(r"[\s\-]+", plain) if w and w not in _STAGE_FILLER]
    for candidate in (plain, " ".join(words), "".join(words)):
        if not candidate or candidate.isdigit():  # a bare number is not how stages are written
            continue
        try:
            stage = parse_stage(candidate)
        except ValueError:
            continue
        return stage if stage in SLEEP_STAGES else None
    return None


def _split_rule_text(text: str, catalogue: _Catalogue) -> list[str]:
    """'N2.1, N2.2' or 'N2.1 N2.2' -> ['N2.1', 'N2.2']; a piece that is one ID stays whole."""
    pieces: list[str] = []
    for part in _RULE_SPLIT.split(text.strip().strip("[]")):
        part = part.strip()
        if not part:
            continue
        if catalogue.lookup(part) is not None or len(part.split()) == 1:
            pieces.append(part)
        else:
            pieces.extend(part.split())
    return pieces


def _read_rules(value: object, answer: Answer, catalogue: _Catalogue) -> None:
    if isinstance(value, CutString):  # cut off inside the string: its last piece is incomplete
        _add(answer.repaired, "rules_string")
        pieces = _split_rule_text(value, catalogue)
        if pieces:
            _add(answer.repaired, "incomplete_rule_dropped")
        for printed in pieces[:-1]:
            _take_rule(printed, answer, catalogue)
        return
    if isinstance(value, str):
        items: list[object] = [value]
        _add(answer.repaired, "rules_string")
    elif isinstance(value, list) and not isinstance(value, ObjectPairs):
        items = list(value)
    else:
        _add(answer.flags, f"wrong_type:{RULES_KEY}")
        return
    for item in items:
        if isinstance(item, CutString):
            _add(answer.repaired, "incomplete_rule_dropped")
            continue
        if not isinstance(item, str):
            _add(answer.flags, f"wrong_type:{RULES_KEY}")
            continue
        pieces = _split_rule_text(item, catalogue)
        if len(pieces) > 1 and isinstance(value, list):
            _add(answer.repaired, "rules_string")
        for printed in pieces:
            _take_rule(printed, answer, catalogue)


def _take_rule(printed: str, answer: Answer, catalogue: _Catalogue) -> None:
    rule_id = catalogue.lookup(printed)
    if rule_id is None:
        rule_id = _short(printed.strip())
        if rule_id not in answer.rules:
            _add(answer.flags, f"unknown_rule:{rule_id}")
    elif rule_id != printed:
        _add(answer.repaired, "rule_id_normalised")
    if rule_id in answer.rules:
        _add(answer.repaired, "duplicate_rule")
        return
    if len(answer.rules) >= MAX_RULES:
        _add(answer.flags, "too_many_rules")
        return
    answer.rules.append(rule_id)


def _read_rationale(value: object, answer: Answer) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        _add(answer.flags, f"wrong_type:{RATIONALE_KEY}")
        return
    if _SURROGATE.search(value):
        value = _SURROGATE.sub("\ufffd", value)
        _add(answer.repaired, "lone_surrogate")
    answer.rationale = str(value)


def _canonical_key(key: str) -> tuple[str | None, str | None]:
    """(field name, repair needed) for a printed key; (None, None) when it is not a field."""
    if key in FIELD_ORDER:
        return key, None
    plain = re.sub(r"[^a-z0-9]+", "_", key.strip().lower()).strip("_")
    name = _KEY_ALIASES.get(plain)
    if name is None:
        return None, None
    return name, ("key_normalised" if plain == name else f"key_alias:{_short(key)}")


def _is_answer(value: object) -> bool:
    return isinstance(value, ObjectPairs) and any(
        isinstance(k, str) and _canonical_key(k)[0] for k, _ in value)


def _answer_in(value: object) -> ObjectPairs | None:
    if _is_answer(value):
        return value  # type: ignore[return-value]
    if isinstance(value, list) and not isinstance(value, ObjectPairs):
        for item in value:
            if _is_answer(item):
                return item
    return None


# -- the whole answer ----------------------------------------------------------------------------

def _choose(text: str) -> tuple[ReadValue | None, ObjectPairs | None]:
    """The first object in the text that looks like an answer (or failing that, any object)."""
    fallback: ReadValue | None = None
    for found in iter_values(text):
        obj = _answer_in(found.value)
        if obj is not None:
            return found, obj
        if fallback is None and isinstance(found.value, ObjectPairs):
            fallback = found
    return fallback, (fallback.value if fallback is not None else None)  # type: ignore[return-value]


def _parse(raw: str, catalogue: _Catalogue) -> Answer:
    answer = Answer(stage=None, stage_text=None, raw=raw)
    text = raw
    if "```" in text:
        text = _FENCE.sub(" ", text)
        _add(answer.repaired, "code_fence")
    found, obj = _choose(text)
    if found is None or obj is None:
        _add(answer.flags, "no_json")
        return answer
    for repair in found.repairs:
        _add(answer.repaired, repair)
    if found.truncated:
        _add(answer.flags, "truncated")
    if text[:found.start].strip() or text[found.end:].strip():
        _add(answer.repaired, "surrounding_text")
    if obj is not found.value:
        _add(answer.flags, "top_level_array")
        if sum(1 for item in found.value if _is_answer(item)) > 1:  # type: ignore[union-attr]
            _add(answer.flags, "multiple_objects")
    if not found.truncated:
        if any(_answer_in(more.value) is not None for more in iter_values(text, found.end)):
            _add(answer.flags, "multiple_objects")

    fields: dict[str, object] = {}
    for key, value in obj:
        name, repair = _canonical_key(key) if isinstance(key, str) else (None, None)
        if name is None:
            _add(answer.repaired, f"ignored_key:{_short(key)}")
            continue
        if repair:
            _add(answer.repaired, repair)
        if name in fields:
            _add(answer.flags, f"duplicate_key:{name}")
            continue
        fields[name] = value

    _read_rationale(fields.get(RATIONALE_KEY), answer)
    if RULES_KEY in fields:
        _read_rules(fields[RULES_KEY], answer, catalogue)
    else:
        _add(answer.flags, "missing_rules")
    _read_stage(fields.get(STAGE_KEY), answer)
    if answer.stage is not None:
        for rule_id in answer.rules:
            if catalogue.fits(rule_id, answer.stage) is False:
                _add(answer.flags, f"rule_stage_mismatch:{rule_id}")
    return answer


def parse_answer(text: str, *, rules: Mapping[str, Rule] | Iterable[str] | None = None) -> Answer:
    """Read a model's answer from any text; never raises.

    ``rules`` is the model pack's rule catalogue (ID -> Rule, or just the IDs); by default the
    bundled AASM catalogue. Rules it does not know are kept and flagged ``unknown_rule:ID``.
    """
    raw = _as_text(text)
    try:
        return _parse(raw, _Catalogue(rules))
    except Exception as exc:  # noqa: BLE001 - a scoring run must survive any model output
        return Answer(stage=None, stage_text=None, flags=[f"parser_error:{type(exc).__name__}"],
                      raw=raw)


def format_answer(stage: Stage | str, rules: Iterable[str], rationale: str | None = None) -> str:
    """The canonical answer text, fields in training order; without a rationale the coarse variant.

    Used to build training targets, so bad input raises ``ValueError`` rather than being guessed.
    """
    if isinstance(stage, Stage):
        value = stage
    elif isinstance(stage, str) and stage in _EXACT_STAGES:
        value = _EXACT_STAGES[stage]
    else:
        raise ValueError(f"not a sleep stage: {stage!r}")
    if value not in SLEEP_STAGES:
        raise ValueError(f"not a sleep stage: {stage!r}")
    if isinstance(rules, str):
        raise ValueError("rules must be a list of rule IDs, not one string")
    rule_list = list(rules)
    for rule_id in rule_list:
        if not isinstance(rule_id, str) or not rule_id or rule_id != rule_id.strip():
            raise ValueError(f"not a rule ID: {rule_id!r}")
    if len(set(rule_list)) != len(rule_list):
        raise ValueError(f"a rule is cited twice: {rule_list!r}")
    obj: dict[str, object] = {}
    if rationale is not None:
        if not isinstance(rationale, str):
            raise ValueError(f"rationale must be text, not {type(rationale).__name__}")
        if _SURROGATE.search(rationale):
            raise ValueError("rationale contains an unpaired surrogate code point")
        obj[RATIONALE_KEY] = rationale
    obj[RULES_KEY] = rule_list
    obj[STAGE_KEY] = value.value
    return json.dumps(obj, ensure_ascii=False)
