"""Suggestions in the clinic's words, for the AI panel and its tooltips (no Qt): a flag or a
parse repair said plainly, the model's probability, a rule's catalogue entry, and the verdicts
of the evidence checks. Rich-text pieces escape everything the model wrote."""

from __future__ import annotations

import html
import re

from ..core.base.probabilities import format_percent
from ..core.base.rules import Rule
from ..core.base.stages import SLEEP_STAGES
from ..core.review.suggested_stage import source_text, stager_name
from ..core.study.decision import AI_ACCEPTED, AI_OVERRIDDEN, IMPORTED
from ..core.study.suggestions import RATIONALE_DISAGREES, Suggestion
from ..core.trust.evidence.rules_check import CONTRADICTED, NOT_MEASURABLE, SUPPORTED, RuleCheck

VERDICT_MARKS = {SUPPORTED: "✓", CONTRADICTED: "✗", NOT_MEASURABLE: "?"}
VERDICT_COLOURS = {SUPPORTED: "#30a030", CONTRADICTED: "#e04040", NOT_MEASURABLE: "#909090"}
VERDICT_WORDS = {SUPPORTED: "supported by the signal", CONTRADICTED: "contradicted by the signal",
                 NOT_MEASURABLE: "not measurable here"}

_REPAIRS = {
    "code_fence": "code fence", "surrounding_text": "text around the answer",
    "smart_quotes": "smart quotes", "single_quotes": "single quotes",
    "trailing_comma": "trailing comma", "extra_comma": "extra comma",
    "missing_comma": "missing comma", "unquoted_key": "unquoted key",
    "unquoted_value": "unquoted value", "equals_for_colon": "'=' for ':'",
    "python_literals": "Python literals", "unescaped_quote": "unescaped quote",
    "control_characters": "control characters", "invalid_escape": "invalid escape",
    "lone_surrogate": "broken character", "key_normalised": "key spelling",
    "rules_string": "rules as one string", "rule_id_normalised": "rule ID spelling",
    "duplicate_rule": "a rule cited twice", "incomplete_rule_dropped": "an unfinished rule dropped",
    "stage_normalised": "stage spelling",
}


def describe_repairs(repaired) -> str | None:
    """``parsed after repair: smart quotes, trailing comma`` (None when nothing was repaired)."""
    if not repaired:
        return None
    items = repaired if isinstance(repaired, (list, tuple)) else [repaired]
    words = []
    for item in items:
        name, _, detail = str(item).partition(":")
        if name == "key_alias":
            words.append(f"field name {detail}")
        elif name == "ignored_key":
            words.append(f"extra field {detail} ignored")
        else:
            words.append(_REPAIRS.get(name, name.replace("_", " ")))
    return "parsed after repair: " + ", ".join(words)


def describe_flag(flag: str, suggestion: Suggestion, *, from_rationale: bool = False) -> str:
    """One flag in the clinic's words, e.g. ``rule R.1 does not belong to N2``.

    ``from_rationale``: the flag is the rationale answer's (its stage is the one it named)."""
    name, _, detail = str(flag).partition(":")
    named = suggestion.rationale_pass_stage if from_rationale else suggestion.model_reading
    stage = named.value if named is not None else "the stage"
    if name == "rule_stage_mismatch":
        return f"rule {detail} does not belong to {stage}"
    if name == "unknown_rule":
        return f"rule {detail} is not in the rule catalogue"
    if name == "invalid_stage":
        return f"not a sleep stage: {detail}"
    if name == RATIONALE_DISAGREES:
        other = suggestion.rationale_pass_stage
        named = other.value if other is not None else "no stage"
        return f"the rationale names {named}, the fast answer {stage}"
    texts = {
        "edge_epoch": "judged without a neighbouring epoch (recording edge or gap)",
        "truncated": "the answer was cut off",
        "no_json": "no answer could be read",
        "missing_stage": "the answer names no stage",
        "missing_rules": "the answer cites no rules",
        "too_many_rules": "too many rules cited",
        "multiple_objects": "more than one answer given",
        "top_level_array": "the answer was wrapped in a list",
        "duplicate_key": f"field {detail} given twice",
        "wrong_type": f"field {detail} has the wrong type",
        "parser_error": "the answer could not be read (parser error)",
    }
    return texts.get(name, str(flag).replace("_", " "))


# "75 uV", "(uV)": the ASCII spelling the default pack learnt; shown as a technologist writes it
_MICROVOLT = re.compile(r"(?<=[\d\s(])uV\b")


def clinical_units(text: str) -> str:
    """The model's text with microvolts written µV (``75 uV`` -> ``75 µV``).

    Parameters
    ----------
    text : str
        What the model wrote.

    Returns
    -------
    str
        The same text, as long (so the positions of its checked claims still hold).
    """
    return _MICROVOLT.sub("µV", text)


def opinion_text(opinion) -> str:
    """The second opinion for the panel's line.

    Parameters
    ----------
    opinion : SecondOpinion
        The stager's answer for the epoch (``method``, ``stage``, ``probabilities``).

    Returns
    -------
    str
        ``Second opinion (YASA 0.8.1): N2 · 80 %``.
    """
    p = dict(opinion.probabilities).get(opinion.stage)
    return (f"Second opinion ({stager_name(opinion.method)}): {opinion.stage.label} "
            f"\u00b7 {format_percent(p)}")


def decision_text(decision) -> str:
    """The technologist's decision in words, for the line beside the suggestion.

    Parameters
    ----------
    decision : Decision
        The standing decision of the epoch (``SuggestionReview.decision``).

    Returns
    -------
    str
        ``Scored N1 by alice, overriding the suggestion: "K complex at 12 s"``, ``Accepted
        by alice``, ``Scored N2 by alice``, ``Imported N2 (bob)``; the note quoted when there is
        one.
    """
    stage = decision.stage.label
    if decision.source == AI_OVERRIDDEN:
        text = f"Scored {stage} by {decision.scorer}, overriding the suggestion"
    elif decision.source == AI_ACCEPTED:
        text = f"Accepted {stage} by {decision.scorer}"
    elif decision.source == IMPORTED:
        text = f"Imported {stage} ({decision.scorer})"
    else:
        text = f"Scored {stage} by {decision.scorer}"
    note = (decision.note or "").strip()
    return f"{text}: \u201c{note}\u201d" if note else text


def confidence_text(suggestion: Suggestion) -> str:
    """``· 87 %``: the model's probability for its suggested stage (``· —`` when unknown)."""
    p = suggestion.stage_probability if suggestion.stage is not None else None
    return f"\u00b7 {format_percent(p)}"


def confidence_tooltip(suggestion: Suggestion) -> str:
    """The five stage probabilities, one per line, the suggested stage marked; or why none."""
    probabilities = suggestion.stage_probabilities
    if suggestion.stage is None:
        return "The model named no stage."
    if not probabilities or suggestion.stage_probability is None:
        return ("The model's probability is unknown for this suggestion (scored before the "
                "workstation kept it, or by a server that returns no token probabilities).")
    lines = [f"The probability of each stage from {source_text(suggestion)}:" if suggestion.led
             else "The model's probability for each stage:"]
    for stage in SLEEP_STAGES:
        mark = "  \u25c0 suggested" if stage is suggestion.stage else ""
        lines.append(f"{stage.label}: {format_percent(probabilities.get(stage, 0.0))}{mark}")
    lines.append("(the stager's own probabilities)" if suggestion.led
                 else "(from its token probabilities under the answer grammar)")
    return "\n".join(lines)


def source_line(suggestion: Suggestion) -> str:
    """Where a led suggestion's stage came from and what the model read (empty when the stage
    is the model's own), e.g. ``Stage from YASA 0.8.1 (EEG), trained on real nights · the
    model read N1 (62 %): its rules and rationale are for N1``."""
    if not suggestion.led:
        return ""
    read = suggestion.model_stage
    if read is None:
        model = f"the model named no stage ({suggestion.stage_text or 'nothing read'})"
    elif read is suggestion.stage:
        model = f"the model read the same ({read.value} {format_percent(suggestion.model_stage_probability)})"
    else:
        model = (f"the model read {read.value} ({format_percent(suggestion.model_stage_probability)}): "
                 f"its rules and rationale are for {read.value}")
    return f"Stage from {source_text(suggestion)} · {model}"


def rule_tooltip(rule_id: str, rule: Rule | None) -> str:
    """Rich text built only from escaped pieces: the rule's title and text (µV as a technologist
    writes it; the catalogue the model was prompted with spells it uV), or why it is unknown."""
    if rule is None:
        return (f"<b>{html.escape(rule_id)}</b><br>Not a rule in the catalogue: the model cited "
                f"something the rules do not define.")
    return (f"<b>{html.escape(rule.id)} — {html.escape(rule.title)}</b><br>"
            f"{html.escape(clinical_units(rule.text))}")


def check_tooltip(check: RuleCheck) -> str:
    """The rule check's line of a chip tooltip (rich text, escaped)."""
    return (f"<br><br><b style='color:{VERDICT_COLOURS[check.verdict]}'>{VERDICT_MARKS[check.verdict]} "
            f"{VERDICT_WORDS[check.verdict]}</b><br>{html.escape(check.reason)}")


def checks_summary(rule_checks, claim_checks) -> str:
    """``Signal check: rules 2 ✓ 1 ✗ · rationale 3 ✓ 1 ✗ 1 ?`` (empty when nothing was checked)."""
    parts = []
    for name, checks in (("rules", rule_checks), ("rationale", claim_checks)):
        if checks:
            counts = [f"{sum(c.verdict == v for c in checks)} {VERDICT_MARKS[v]}"
                      for v in (SUPPORTED, CONTRADICTED, NOT_MEASURABLE)
                      if any(c.verdict == v for c in checks)]
            parts.append(f"{name} {' '.join(counts)}")
    return "Signal check: " + " · ".join(parts) if parts else ""
