"""Checkable facts in a rationale, checked against the epoch's measurements (no Qt).

A model's rationale says things like "a sleep spindle in C4-M1 at 12 s", "no K complexes",
"slow waves occupying 35% of the epoch", "alpha over O2 in more than half of the epoch",
"rapid eye movements" or "low chin tone". ``find_claims`` finds such phrases with tolerant
patterns (one claim per waveform mention, with the lead, time and amount said next to it, and
whether it is denied); ``check_claims`` holds each against the ``EpochEvidence`` and returns
character spans with a verdict (supported / contradicted / not_measurable) and a short reason
that quotes the measured value. Times are seconds from the epoch's onset, as the model's image
shows them. Thresholds are those of ``rules_check`` so claims and rule checks never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .measures import EpochEvidence
from .rules_check import ALPHA_WAKE, CONTRADICTED, NOT_MEASURABLE, SUPPORTED, chin_level

TIME_TOLERANCE_S = 1.0      # a claimed event time matches a detection this close to its onset
PERCENT_TOLERANCE = 10.0    # "35% of the epoch" holds within 10 percentage points
SECONDS_TOLERANCE = 3.0     # "slow waves for 12 s" holds within 3 s
ABSENT_ALPHA = 0.2          # "no alpha": alpha dominant in under 20% of the epoch

_SP = r"(?:sleep\s+)?spindles?"
_KC = r"K[\s-]*complex(?:es)?"
_TONE = (r"(?:(?:chin|EMG|muscle)\s+(?:EMG\s+|muscle\s+)?(?:tone|activity)|(?:chin\s+)?tone)")
_MENTIONS: tuple[tuple[str, str], ...] = (
    ("spindle", _SP),
    ("k_complex", _KC),
    ("slow_wave", r"slow[\s-]*waves?(?:\s+activity)?|delta\s+waves?|\bSWA\b"),
    ("alpha", r"alpha(?:\s+(?:rhythm|activity|waves?))?"),
    ("rem", r"rapid\s+eye\s+movements?|\bREMs\b"),
    ("sem", r"slow\s+eye\s+movements?|\bSEMs\b"),
    ("blink", r"(?:eye\s+)?blinks?"),
    ("chin_low", r"\b(?:low|lowest|reduced|decreased|minimal|absent)\s+" + _TONE +
                 r"|chin\s+(?:EMG\s+)?atonia|\batonia\b|"
                 r"chin\s+(?:EMG\s+)?(?:tone\s+)?(?:is\s+|was\s+)?(?:low|at\s+its\s+lowest|minimal)"),
    ("chin_high", r"\b(?:high|elevated|increased|normal|raised|tonic)\s+" + _TONE +
                  r"|chin\s+(?:EMG\s+)?(?:tone\s+)?(?:is\s+|was\s+)?(?:high|elevated|increased)"),
)
_MENTION_RE = re.compile("|".join(f"(?P<{k}>{p})" for k, p in _MENTIONS), re.IGNORECASE)
_LEAD_RE = re.compile(r"\b(?P<lead>[FCO][1-4])(?:\s*[-–/]\s*(?:M[12]|A[12]))?\b", re.IGNORECASE)
_TIME_RE = re.compile(r"\bat\s+(?:about\s+|around\s+|~\s*)?(?P<t>\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds?)\b",
                      re.IGNORECASE)
_CMP = (r"(?P<cmp>more\s+than|over|above|greater\s+than|at\s+least|exceeding|>=|≥|>|less\s+than|"
        r"under|below|fewer\s+than|at\s+most|<=|≤|<|about|approximately|around|~)?\s*")
_AMOUNT_RE = re.compile(_CMP + r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>%|percent\b|s\b|sec\b|secs\b|seconds?\b)",
                        re.IGNORECASE)
_HALF_RE = re.compile(r"(?P<cmp>more\s+than|over|less\s+than|under|at\s+least)\s+(?:one\s+)?half\b|"
                      r"(?P<most>\bmajority\b|\bmost\s+of\b)", re.IGNORECASE)
_NEGATION_RE = re.compile(r"\b(?:no|not|without|absence\s+of|absent|lack(?:ing)?(?:\s+of)?|nor|neither|"
                          r"free\s+of|none)\b(?!\s+(?:W|N1|N2|N3|R|REM\s+sleep|wake)\b)", re.IGNORECASE)
_POST_NEGATION_RE = re.compile(r"^\s*(?:are|is|were|was)?\s*(?:absent|not\s+(?:seen|present|visible|"
                               r"detected|evident))", re.IGNORECASE)
_NEGATION_BREAK = re.compile(r"[^\w\s,/()-]|\b(?:and\s+(?:a|an|the|one|\d+)|with|present|seen|visible|is|are|"
                             r"was|were|has|have|shows?)\b", re.IGNORECASE)
_REPLACED_RE = re.compile(r"^\s*(?:rhythm\s+)?(?:is\s+|was\s+|has\s+been\s+)?(?:replaced|attenuated|attenuating|"
                          r"blocked|disappear|disappeared|giving\s+way)", re.IGNORECASE)
_CLAUSE_END = re.compile(r"\.(?!\d)|[;:!?\n]|\bbut\b|\bwhile\b|\bwhereas\b|\bhowever\b", re.IGNORECASE)
_LEADS = {"F": "F4-M1", "C": "C4-M1", "O": "O2-M1"}
_GE = {"more than", "over", "above", "greater than", "at least", "exceeding", ">=", "≥", ">"}
_LE = {"less than", "under", "below", "fewer than", "at most", "<=", "≤", "<"}


@dataclass(frozen=True)
class Claim:
    """One checkable statement in a rationale: ``text[start:end]``."""

    start: int
    end: int
    kind: str                    # spindle, k_complex, slow_wave, alpha, rem, sem, blink, chin_low, chin_high
    negated: bool = False        # "no spindles", "spindles are absent"
    lead: str | None = None      # the lead named, as the role measured (e.g. "C4-M1")
    lead_text: str | None = None  # the lead as written (e.g. "C3")
    time_s: float | None = None  # "at 12 s"
    amount: tuple[str, float, str] | None = None   # (comparator, value, "%" | "s")
    previous_epoch: bool = False


@dataclass(frozen=True)
class ClaimCheck:
    start: int
    end: int
    kind: str
    text: str
    verdict: str     # supported | contradicted | not_measurable
    reason: str


def _clause_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The clause around ``text[start:end]``: from the last clause break before to the next after."""
    lo = 0
    for m in _CLAUSE_END.finditer(text, 0, start):
        lo = m.end()
    m = _CLAUSE_END.search(text, end)
    hi = m.start() if m else len(text)
    return lo, hi


def _amount(cmp: str | None, num: float, unit: str) -> tuple[str, float, str]:
    cmp = re.sub(r"\s+", " ", (cmp or "").lower()).strip()
    op = ">=" if cmp in _GE else "<" if cmp in _LE else "~"
    return op, num, "%" if unit.lower().startswith(("%", "percent")) else "s"


def find_claims(text: str) -> list[Claim]:
    """Every checkable mention in ``text``, in order."""
    mentions = list(_MENTION_RE.finditer(text or ""))
    claims: list[Claim] = []
    for i, m in enumerate(mentions):
        kind = m.lastgroup
        lo, hi = _clause_bounds(text, m.start(), m.end())
        nxt = mentions[i + 1].start() if i + 1 < len(mentions) else len(text)
        tail_end = max(m.end(), min(hi, nxt))
        tail = text[m.end():tail_end]
        head = text[lo:m.start()]
        end = m.end()
        neg = [n for n in _NEGATION_RE.finditer(head)
               if not _NEGATION_BREAK.search(head[n.end():]) and len(head) - n.end() <= 40]
        negated = bool(neg) or bool(_POST_NEGATION_RE.match(tail))
        prev_end = mentions[i - 1].end() if i else 0
        start = lo + neg[-1].start() if neg and lo + neg[-1].start() >= prev_end else m.start()
        if kind in ("chin_low", "chin_high"):
            claims.append(Claim(start, end, kind, negated))
            continue
        lead = lead_text = None
        lm = _LEAD_RE.search(tail)
        if lm and lm.start() < 25:
            lead_text = lm.group(0)
            lead = _LEADS[lm.group("lead")[0].upper()]
            end = max(end, m.end() + lm.end())
        else:
            back = _LEAD_RE.search(head[-20:])
            if back and re.search(r"\b(?:in|on|over|at)\s*$", head[-20:][:back.start()]):
                lead_text, lead = back.group(0), _LEADS[back.group("lead")[0].upper()]
        time_s = None
        tm = _TIME_RE.search(tail)
        if tm and kind in ("spindle", "k_complex", "rem", "blink", "sem"):
            time_s = float(tm.group("t"))
            end = max(end, m.end() + tm.end())
        amount = None
        if kind in ("slow_wave", "alpha"):
            am = _AMOUNT_RE.search(tail)
            hm = _HALF_RE.search(tail)
            if hm and (am is None or hm.start() < am.start()):
                if hm.group("most"):
                    amount = (">=", 50.0, "%")
                else:
                    amount = (_amount(hm.group("cmp"), 50.0, "%")[0], 50.0, "%")
                end = max(end, m.end() + hm.end())
            elif am:
                amount = _amount(am.group("cmp"), float(am.group("num")), am.group("unit"))
                end = max(end, m.end() + am.end())
            rm = _REPLACED_RE.match(tail) if amount is None and kind == "alpha" else None
            if rm:
                amount, end = ("<", 50.0, "%"), max(end, m.end() + rm.end())
        previous = bool(re.search(r"\b(?:previous|preceding|prior)\s+epoch", text[lo:hi], re.IGNORECASE))
        claims.append(Claim(start, end, kind, negated, lead, lead_text, time_s, amount, previous))
    return claims


def _check(claim: Claim, ev: EpochEvidence) -> tuple[str, str]:
    k = claim.kind
    if k == "spindle":
        return _check_events(claim, ev, "spindles", "sleep spindle",
                             [(s[1], s[0]) for s in ev.spindles], "spindle")
    if k == "k_complex":
        return _check_events(claim, ev, "k_complexes", "K complex",
                             [(kc[0], "F4-M1") for kc in ev.k_complexes], "K complex")
    if k == "rem":
        return _check_events(claim, ev, "rems", "rapid eye movement", [(r[0], "LOC/ROC") for r in ev.rems])
    if k == "sem":
        return _count_claim(claim, ev, "sems", ev.sems, "slow eye movements on LOC/ROC")
    if k == "blink":
        return _count_claim(claim, ev, "blinks", ev.blinks, "eye blinks on LOC/ROC")
    if k == "slow_wave":
        return _check_slow_waves(claim, ev)
    if k == "alpha":
        return _check_alpha(claim, ev)
    if k in ("chin_low", "chin_high"):
        if not ev.is_measurable("chin"):
            return NOT_MEASURABLE, "chin EMG is not recorded in this epoch"
        low = ev.chin_low
        said_low = (k == "chin_low") != claim.negated
        text = f"chin EMG {ev.chin_rms:.1f} µV RMS, {chin_level(ev.chin_relative)}"
        return (SUPPORTED if low == said_low else CONTRADICTED), text
    return NOT_MEASURABLE, "nothing to measure"


def _check_events(claim: Claim, ev: EpochEvidence, item: str, name: str,
                  found: list[tuple[float, str]], prev_kind: str | None = None) -> tuple[str, str]:
    if not ev.is_measurable(item):
        return NOT_MEASURABLE, f"cannot measure {name}s in this epoch (channel missing or not recorded)"
    if claim.lead and claim.kind == "spindle" and claim.lead not in ev.band_db:
        return NOT_MEASURABLE, f"{claim.lead} is not recorded: spindles are measured on the other leads"
    if claim.previous_epoch and prev_kind is not None:
        found = [(t, "previous epoch") for kind, t in ev.previous_late_events if kind == prev_kind]
        where = " in the previous epoch's second half"
    else:
        where = ""
    listing = ", ".join(f"{lead} at {t:.1f} s" for t, lead in found[:4]) or "none"
    if claim.negated:
        ok = not found
        return (SUPPORTED if ok else CONTRADICTED), f"{len(found)} {name}(s) detected{where} ({listing})"
    if claim.time_s is not None:
        near = [(t, lead) for t, lead in found if abs(t - claim.time_s) <= TIME_TOLERANCE_S]
        on_lead = [(t, lead) for t, lead in near if claim.lead is None or lead == claim.lead]
        if on_lead:
            t, lead = on_lead[0]
            return SUPPORTED, f"{name} detected on {lead} at {t:.1f} s{where}"
        if near:
            t, lead = near[0]
            return SUPPORTED, (f"{name} detected at {t:.1f} s on {lead}, not on {claim.lead}")
        lead = f" on {claim.lead}" if claim.lead else ""
        return CONTRADICTED, (f"no {name} detected{lead} within {TIME_TOLERANCE_S:.0f} s of "
                              f"{claim.time_s:g} s{where} (detected: {listing})")
    if claim.lead and claim.kind == "spindle":
        here = [(t, lead) for t, lead in found if lead == claim.lead]
        if here:
            return SUPPORTED, f"{len(here)} {name}(s) on {claim.lead} (at {here[0][0]:.1f} s)"
        if found:
            return SUPPORTED, f"{name}s detected on other leads only ({listing})"
        return CONTRADICTED, f"no {name} detected on any lead{where}"
    if found:
        return SUPPORTED, f"{len(found)} {name}(s) detected{where} ({listing})"
    return CONTRADICTED, f"no {name} detected in this epoch{where}"


def _count_claim(claim: Claim, ev: EpochEvidence, item: str, count: int, name: str) -> tuple[str, str]:
    if not ev.is_measurable(item):
        return NOT_MEASURABLE, f"cannot measure {name} in this epoch (channel missing)"
    ok = (count == 0) if claim.negated else (count > 0)
    return (SUPPORTED if ok else CONTRADICTED), f"{count} {name} detected"


def _compare(op: str, measured: float, value: float, tol: float) -> bool:
    if op == ">=":
        return measured >= value - 1e-9
    if op == "<":
        return measured < value + 1e-9
    return abs(measured - value) <= tol


def _amount_text(amount: tuple[str, float, str]) -> str:
    op, value, unit = amount
    return {">=": "at least ", "<": "under ", "~": "about "}[op] + f"{value:g}{'%' if unit == '%' else ' s'}"


def _check_slow_waves(claim: Claim, ev: EpochEvidence) -> tuple[str, str]:
    if not ev.is_measurable("slow_waves"):
        return NOT_MEASURABLE, "cannot measure slow waves: F4-M1 is missing in this epoch"
    secs = ev.slow_wave_seconds
    pct = 100.0 * secs / 30.0
    measured = f"slow waves > 75 µV on F4-M1 for {secs:.1f} s ({pct:.0f}% of the epoch)"
    if claim.amount is not None:
        op, value, unit = claim.amount
        ok = (_compare(op, pct, value, PERCENT_TOLERANCE) if unit == "%"
              else _compare(op, secs, value, SECONDS_TOLERANCE))
        ok = ok != claim.negated
        return (SUPPORTED if ok else CONTRADICTED), f"{measured}; the rationale says {_amount_text(claim.amount)}"
    present = secs > 0
    return (SUPPORTED if present != claim.negated else CONTRADICTED), measured


def _check_alpha(claim: Claim, ev: EpochEvidence) -> tuple[str, str]:
    if not ev.is_measurable("alpha"):
        return NOT_MEASURABLE, "cannot measure alpha: O2-M1 is missing in this epoch"
    pct = 100.0 * ev.alpha_fraction
    measured = f"alpha (8-13 Hz) dominant on O2-M1 in {pct:.0f}% of the 1-s windows"
    if claim.lead and claim.lead != "O2-M1":
        measured += f" (measured on O2-M1, not {claim.lead_text})"
    if claim.amount is not None and claim.amount[2] == "%":
        op, value, _ = claim.amount
        ok = _compare(op, pct, value, PERCENT_TOLERANCE) != claim.negated
        return (SUPPORTED if ok else CONTRADICTED), f"{measured}; the rationale says {_amount_text(claim.amount)}"
    if claim.negated:
        ok = ev.alpha_fraction < ABSENT_ALPHA
        return (SUPPORTED if ok else CONTRADICTED), f"{measured} (absent means under {ABSENT_ALPHA:.0%})"
    ok = ev.alpha_fraction > 0
    if ok and ev.alpha_fraction <= ALPHA_WAKE:
        measured += ", not more than half"
    return (SUPPORTED if ok else CONTRADICTED), measured


def check_claims(text: str, evidence: EpochEvidence) -> list[ClaimCheck]:
    """Each checkable claim in a rationale, with its verdict against that epoch's measurements.

    Parameters
    ----------
    text : str
        The rationale (None or empty: no claims).
    evidence : EpochEvidence
        The measurements of the epoch the rationale explains.

    Returns
    -------
    list of ClaimCheck
        In text order: the claim's character span (``start``, ``end``) and ``text``, its ``kind``
        (``"spindle"``, ``"k_complex"``, ``"slow_wave"``, ``"alpha"``, ...), the ``verdict``
        (``"supported"``, ``"contradicted"`` or ``"not_measurable"``) and a short ``reason``
        quoting the measured value.
    """
    out = []
    for claim in find_claims(text or ""):
        verdict, reason = _check(claim, evidence)
        out.append(ClaimCheck(claim.start, claim.end, claim.kind, text[claim.start:claim.end], verdict, reason))
    return out
