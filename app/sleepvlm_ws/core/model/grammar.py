"""Constraining the model to the answer shape: a JSON schema and a hand-written GBNF grammar.

The grammar is written here rather than converted from the schema: llama-cpp-python's
converter lets raw control characters into strings (so strict ``json.loads`` can fail on its
output) and mishandles escapes. Every string :func:`answer_gbnf` accepts is strict JSON that
:func:`~sleepvlm_ws.core.model.answer.parse_answer` reads with no flags: fixed key order as in training,
one of the five stages, only rule IDs that may accompany that stage, a rationale of printable
characters with JSON escapes only, and bounded whitespace.

An invalid grammar crashes llama-cpp-python 0.3.36 (no NULL check after the grammar parser
fails), so :func:`validate_grammar_in_child` checks a grammar in a separate process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Iterable, Mapping

from ..base.rules import Rule, load_rules
from ..base.stages import SLEEP_STAGES, Stage
from .answer import RATIONALE_KEY, RULES_KEY, STAGE_KEY

# About what 1024 new tokens can hold. Not the schema's default: llama-cpp-python 0.3.36's
# schema converter spells maxLength out as nested optionals, and from about 1,100 characters on
# llama.cpp refuses the resulting grammar (which crashes 0.3.36). max_tokens bounds it anyway.
MAX_RATIONALE_CHARS = 4096
MAX_BLANKS = 12  # whitespace between tokens: enough for pretty-printing, not for runaway output


def _rule_list(rule_ids: Iterable[str]) -> list[str]:
    if isinstance(rule_ids, str):
        raise ValueError("rule_ids must be a list of rule IDs, not one string")
    ids: list[str] = []
    for rule_id in rule_ids:
        if not isinstance(rule_id, str) or not rule_id.strip() or rule_id != rule_id.strip():
            raise ValueError(f"not a rule ID: {rule_id!r}")
        if rule_id not in ids:
            ids.append(rule_id)
    return ids


def answer_schema(coarse: bool, rule_ids: Iterable[str], *,
                  max_rationale_chars: int | None = None) -> dict:
    """JSON schema of the answer; ``properties`` are in training order (the converter keeps it).

    ``max_rationale_chars`` adds a maxLength to the rationale. Leave it out for llama-cpp-python's
    ``response_format`` (see MAX_RATIONALE_CHARS); validators and other engines may use
    ``MAX_RATIONALE_CHARS``. Prefer :func:`answer_gbnf` with llama.cpp: the converter's strings
    admit raw control characters, which strict JSON refuses.
    """
    ids = _rule_list(rule_ids)
    properties: dict[str, dict] = {}
    if not coarse:
        properties[RATIONALE_KEY] = {"type": "string", "minLength": 1}
        if max_rationale_chars is not None:
            properties[RATIONALE_KEY]["maxLength"] = int(max_rationale_chars)
    properties[RULES_KEY] = {"type": "array", "items": {"type": "string", "enum": ids},
                             "uniqueItems": True, "maxItems": len(ids)}
    properties[STAGE_KEY] = {"type": "string", "enum": [s.value for s in SLEEP_STAGES]}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


# -- GBNF ----------------------------------------------------------------------------------------

def _gbnf_literal(text: str) -> str:
    """A GBNF string literal matching exactly ``text``."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02X}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(f"\\U{ord(ch):08X}")
    return '"' + "".join(out) + '"'


def _json_literal(value: str) -> str:
    """GBNF literal for ``value`` written as a JSON string (quotes included)."""
    return _gbnf_literal(json.dumps(value, ensure_ascii=True))


def _stage_rules(ids: list[str], catalogue: Mapping[str, Rule]) -> dict[Stage, list[str]]:
    """Rule IDs that may accompany each stage; IDs the catalogue does not know go with every stage."""
    fitting: dict[Stage, list[str]] = {stage: [] for stage in SLEEP_STAGES}
    for rule_id in ids:
        rule = catalogue.get(rule_id)
        for stage in SLEEP_STAGES:
            if rule is None or rule.fits(stage):
                fitting[stage].append(rule_id)
    return fitting


def rules_by_stage(rule_ids: Iterable[str],
                   catalogue: Mapping[str, Rule] | None = None) -> dict[Stage, list[str]]:
    """The rule IDs :func:`answer_gbnf` lets each stage list before it (same table, same order):
    what ``core.model.stage_confidence`` follows to see where an answer's stage is decided."""
    return _stage_rules(_rule_list(rule_ids), load_rules() if catalogue is None else catalogue)


def answer_gbnf(coarse: bool, rule_ids: Iterable[str], *,
                catalogue: Mapping[str, Rule] | None = None,
                max_rationale_chars: int | None = None) -> str:
    """GBNF grammar for the answer, root rule ``root``.

    The rule list and the stage are tied together: only rules that may accompany a stage can be
    listed before it (``catalogue``, by default the bundled one, says which). The rationale is not
    bounded unless ``max_rationale_chars`` is given (the request's max_tokens bounds it anyway;
    a long ``{0,n}`` costs the grammar engine time on every token).
    """
    ids = _rule_list(rule_ids)
    catalogue = load_rules() if catalogue is None else catalogue
    fitting = _stage_rules(ids, catalogue)
    ws = f"ws ::= [ \\t\\n\\r]{{0,{MAX_BLANKS}}}"
    lines = ["# SleepVLM answer: " + ("coarse (rules + stage)" if coarse
                                      else "reasoning_text, applicable_rules, sleep_stage")]
    if coarse:
        lines.append('root ::= "{" ws verdict ws "}"')
    else:
        lines.append(f'root ::= "{{" ws {_json_literal(RATIONALE_KEY)} ws ":" ws rationale '
                     'ws "," ws verdict ws "}"')
    lines.append("verdict ::= " + " | ".join(f"verdict-{_name(s)}" for s in SLEEP_STAGES))
    for stage in SLEEP_STAGES:
        name = _name(stage)
        allowed = fitting[stage]
        lines.append(f"verdict-{name} ::= {_json_literal(RULES_KEY)} ws \":\" ws rules-{name} "
                     f"ws \",\" ws {_json_literal(STAGE_KEY)} ws \":\" ws "
                     f"{_json_literal(stage.value)}")
        if allowed:
            more = f' ( ws "," ws rule-{name} ){{0,{len(allowed) - 1}}}' if len(allowed) > 1 else ""
            lines.append(f'rules-{name} ::= "[" ws ( rule-{name}{more} ws )? "]"')
            lines.append(f"rule-{name} ::= " + " | ".join(_json_literal(r) for r in allowed))
        else:
            lines.append(f'rules-{name} ::= "[" ws "]"')
    bound = "*" if max_rationale_chars is None else f"{{0,{int(max_rationale_chars)}}}"
    lines += [
        f'rationale ::= "\\"" text-char{bound} "\\""',
        # any character JSON allows unescaped (no quote, backslash or control character),
        # or one of JSON's escapes; \u escapes of surrogates are left out (no unpaired halves)
        'text-char ::= [^"\\\\\\x00-\\x1F] | "\\\\" escape',
        'escape ::= ["\\\\/bfnrt] | "u" ( [0-9a-cA-Ce-fE-F] hex hex hex | [dD] [0-7] hex hex )',
        "hex ::= [0-9a-fA-F]",
        ws,
    ]
    return "\n".join(lines) + "\n"


def _name(stage: Stage) -> str:
    return stage.value.lower()


# -- validation in a child process ---------------------------------------------------------------

_CHILD = r"""
import sys
data = sys.stdin.buffer.read()
try:
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar
except Exception as exc:
    print("llama-cpp-python is not importable: %s" % exc)
    sys.exit(4)
LlamaGrammar.from_string(data.decode("utf-8"), verbose=False)
# the same parse the sampler does, without a model: a NULL sampler means llama.cpp refused it
sampler = llama_cpp.llama_sampler_init_grammar(None, data, b"root")
if not sampler:
    sys.exit(3)
llama_cpp.llama_sampler_free(sampler)
print("ok")
"""


def _run_child(code: str, stdin: bytes, timeout: float) -> tuple[int | None, str, str]:
    """Run ``code`` in a fresh Python; (exit status or None on timeout, stdout, stderr)."""
    try:
        done = subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, "", ""
    return (done.returncode, done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"))


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "\u2026"


def _child_verdict(status: int | None, out: str, err: str, timeout: float) -> tuple[bool, str]:
    if status is None:
        return False, f"grammar check did not finish within {timeout:g} s"
    if status == 0 and out.strip().endswith("ok"):
        return True, "ok"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return False, f"grammar check crashed ({name})" + (f": {_one_line(err)}" if err.strip() else "")
    if status == 3:
        lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "")
        return False, "llama.cpp rejected the grammar" + (f": {_one_line(reason)}" if reason else "")
    if status == 4:
        return False, _one_line(out) or "llama-cpp-python is not importable"
    return False, f"grammar check failed (exit status {status}): {_one_line(err or out)}"


def validate_grammar_in_child(gbnf: str, timeout: float = 30) -> tuple[bool, str]:
    """Parse ``gbnf`` with llama.cpp in a separate process.

    A crash of the child (llama-cpp-python segfaults on some bad grammars) is reported with the
    signal's name; the calling process is never at risk.

    Parameters
    ----------
    gbnf : str
        The grammar (GBNF text).
    timeout : float
        Seconds the child may take (default 30); a child still running then is stopped and the
        grammar counts as not accepted.

    Returns
    -------
    tuple of (bool, str)
        ``(True, "ok")`` when llama.cpp accepts the grammar, else ``(False, message)``: one line
        saying why (empty, a NUL character or unpaired surrogate, rejected by llama.cpp, a crash,
        a timeout, llama-cpp-python not importable).
    """
    if not isinstance(gbnf, str) or not gbnf.strip():
        return False, "the grammar is empty"
    if "\x00" in gbnf:
        return False, "the grammar contains a NUL character"
    try:
        data = gbnf.encode("utf-8")
    except UnicodeEncodeError:
        return False, "the grammar is not valid Unicode text (unpaired surrogate)"
    status, out, err = _run_child(_CHILD, data, timeout)
    return _child_verdict(status, out, err, timeout)
