"""The tolerant answer parser, against a corpus of real-world model output shapes.

tests/model/answer_corpus/NAME.txt holds what a model printed (bytes, decoded as UTF-8 with
replacement, the way the inference runner hands text over); expected.json says what must be
read from it: stage, rules (order kept), rationale where it matters, and the exact sets of
flags and repairs.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest

from sleepvlm_ws.core.base.rules import Rule, load_rules
from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.model.answer import Answer, format_answer, parse_answer

CORPUS = Path(__file__).parent / "answer_corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))


def _read_case(name: str) -> str:
    return (CORPUS / f"{name}.txt").read_bytes().decode("utf-8", errors="replace")


def test_corpus_and_expectations_match_one_to_one():
    files = {p.stem for p in CORPUS.glob("*.txt")}
    assert files == set(EXPECTED)
    assert len(files) >= 60


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_case(name):
    want = EXPECTED[name]
    text = _read_case(name)
    answer = parse_answer(text)
    assert isinstance(answer, Answer)
    assert answer.raw == text
    assert (answer.stage.value if answer.stage else None) == want["stage"]
    assert answer.rules == want["rules"]
    assert sorted(answer.flags) == want["flags"]
    assert sorted(answer.repaired) == want["repaired"]
    if "rationale" in want:
        assert answer.rationale == want["rationale"]
    if "stage_text" in want:
        assert answer.stage_text == want["stage_text"]
    assert answer.ok == (want["stage"] is not None and not want["flags"])
    assert answer.was_repaired == bool(want["repaired"])


def test_flags_keep_what_the_model_said():
    answer = parse_answer('{"applicable_rules": ["X.9", "R.1"], "sleep_stage": "N4"}')
    assert answer.stage is None and answer.stage_text == "N4"
    assert answer.rules == ["X.9", "R.1"]  # unknown rule kept, in printed order
    assert "invalid_stage:N4" in answer.flags and "unknown_rule:X.9" in answer.flags
    # no stage could be read, so the R.1 rule is not compared against one
    assert not any(f.startswith("rule_stage_mismatch") for f in answer.flags)
    answer = parse_answer('{"applicable_rules": ["R.1", "N2.1"], "sleep_stage": "W"}')
    assert answer.stage is Stage.W and answer.rules == ["R.1", "N2.1"]
    assert answer.flags == ["rule_stage_mismatch:R.1", "rule_stage_mismatch:N2.1"]
    assert not answer.ok


def test_long_rationale_of_ten_thousand_characters():
    rationale = ("C4-M1 spindle at 7 s; F4-M1 K complex at 12 s {not json} \"quoted\". " * 160)[:10_000]
    text = format_answer("N2", ["N2.1"], rationale)
    answer = parse_answer(text)
    assert answer.ok and answer.rationale == rationale and answer.repaired == []
    cut = parse_answer(text[:8_000])
    assert cut.flags == ["truncated", "missing_rules", "missing_stage"]
    assert rationale.startswith(cut.rationale) and len(cut.rationale) > 7_000


@functools.lru_cache(maxsize=1)
def _megabyte_inputs() -> dict[str, str]:
    n = 1_000_000
    rng = random.Random(7)
    return {
        "random_bytes": rng.randbytes(n).decode("utf-8", "replace"),
        "open_braces": "{" * n,
        "open_brackets": "[" * n,
        "quotes": '"' * n,
        "nested_string_arrays": '["' * (n // 2),
        "smart_quote_objects": "{\u201c" * (n // 2),
        "unterminated_rationale": '{"reasoning_text": "' + 'ab\\"c ' * (n // 6),
        "keys_without_values": '{"a": ' * (n // 6),
        "commas": "{" + "," * n,
        "bare_words": '{"applicable_rules": [' + "N2.1 " * (n // 5),
        "structural_soup": "".join(rng.choices('{}[]",:\'\u201c\u201d abcN2.1\\', k=n)),
        "answer_after_garbage": "x{[\"" * (n // 4) + '{"applicable_rules": ["W.1"], "sleep_stage": "W"}',
        # thousands of distinct keys / unknown rules: the lists of flags and repairs stay short
        "many_keys": json.dumps({f"k{i}": 1 for i in range(60_000)} | {"sleep_stage": "N2"}),
        "many_keys_loose": "{" + ", ".join(f"'k{i}': 1" for i in range(60_000)) + ", 'sleep_stage': 'N2'}",
        "many_unknown_rules": json.dumps({"applicable_rules": [f"X.{i}" for i in range(60_000)],
                                          "sleep_stage": "N2"}),
        "many_rules_in_a_string": '{"applicable_rules": "' + ", ".join(f"Y.{i}" for i in range(60_000)) + '"}',
    }


MEGABYTE_CASES = ["random_bytes", "open_braces", "open_brackets", "quotes", "nested_string_arrays",
                  "smart_quote_objects", "unterminated_rationale", "keys_without_values", "commas", "bare_words",
                  "structural_soup", "answer_after_garbage", "many_keys", "many_keys_loose", "many_unknown_rules",
                  "many_rules_in_a_string"]


@pytest.mark.parametrize("name", MEGABYTE_CASES)
def test_megabyte_input_returns(name):
    assert sorted(_megabyte_inputs()) == sorted(MEGABYTE_CASES)
    text = _megabyte_inputs()[name]
    answer = parse_answer(text)  # must return (no catastrophic backtracking, no recursion error)
    assert isinstance(answer, Answer)
    assert not answer.ok
    assert not any(f.startswith("parser_error") for f in answer.flags)
    assert len(answer.flags) <= 33 and len(answer.repaired) <= 33 and len(answer.rules) <= 64


def test_flag_list_is_capped():
    answer = parse_answer(json.dumps({"applicable_rules": [f"X.{i}" for i in range(100)], "sleep_stage": "W"}))
    assert answer.rules == [f"X.{i}" for i in range(64)]
    assert answer.flags[:2] == ["unknown_rule:X.0", "unknown_rule:X.1"]
    assert len(answer.flags) == 33 and answer.flags[-1] == "and_more"


def test_huge_valid_answer_is_read():
    rationale = "LAMF with REMs. " * 70_000  # about 1.1 MB
    answer = parse_answer(format_answer(Stage.R, ["R.1"], rationale))
    assert answer.ok and answer.rationale == rationale


@pytest.mark.parametrize("value", [None, b'{"applicable_rules": ["W.1"], "sleep_stage": "W"}',
                                   bytearray(b"\xff\xfe{"), 12345, ["N2"], {"sleep_stage": "N2"}])
def test_non_text_input_never_raises(value):
    answer = parse_answer(value)  # type: ignore[arg-type]
    assert isinstance(answer, Answer)
    if isinstance(value, bytes):
        assert answer.ok and answer.stage is Stage.W


def test_every_prefix_of_an_answer_is_flagged_and_invents_nothing():
    rationale = 'K complex at 3 s, a "spindle" {11-16 Hz} at 9 s.'
    full = format_answer(Stage.N2, ["N2.1", "N2.2", "MBM.2"], rationale)
    truth = parse_answer(full)
    assert truth.ok
    for cut in range(len(full)):
        answer = parse_answer(full[:cut])
        assert not answer.ok, full[:cut]
        assert answer.stage in (None, Stage.N2), full[:cut]
        # recovered rules are complete rules of the answer, in the same order
        assert answer.rules == [r for r in truth.rules if r in answer.rules], full[:cut]
        if answer.rationale is not None:
            assert rationale.startswith(answer.rationale), full[:cut]
        if full[:cut].strip():
            assert "truncated" in answer.flags or "no_json" in answer.flags, full[:cut]


def test_random_damage_never_raises():
    rng = random.Random(1234)
    fitting = {s: [r.id for r in load_rules().values() if r.fits(s)] for s in SLEEP_STAGES}
    base = [format_answer(s, fitting[s][:2], "Evidence: {x} [y] \"z\".") for s in SLEEP_STAGES]
    alphabet = '{}[]",:\'\\ \n\u201c\u201d\u2018\u2019abN2.1`'
    for _ in range(600):
        text = list(rng.choice(base))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(text) + 1)
            action = rng.random()
            if action < 0.4:
                text.insert(pos, rng.choice(alphabet))
            elif action < 0.8 and pos < len(text):
                del text[pos]
            elif pos < len(text):
                text[pos] = rng.choice(alphabet)
        answer = parse_answer("".join(text))
        assert isinstance(answer, Answer)
        assert not any(f.startswith("parser_error") for f in answer.flags), "".join(text)
        assert answer.stage is None or answer.stage in SLEEP_STAGES


# -- format_answer -------------------------------------------------------------------------------

def test_format_answer_is_canonical_and_in_training_order():
    assert format_answer(Stage.N2, ["N2.1"], "Spindle at 4 s.") == (
        '{"reasoning_text": "Spindle at 4 s.", "applicable_rules": ["N2.1"], "sleep_stage": "N2"}')
    assert format_answer("R", ["R.1", "R.2"]) == '{"applicable_rules": ["R.1", "R.2"], "sleep_stage": "R"}'
    keys = [k for k, _ in json.loads(format_answer("W", [], "x"), object_pairs_hook=list)]
    assert keys == ["reasoning_text", "applicable_rules", "sleep_stage"]
    assert format_answer("W", [], "\u03b1 \u201cq\u201d") == (
        '{"reasoning_text": "\u03b1 \u201cq\u201d", "applicable_rules": [], "sleep_stage": "W"}')


@pytest.mark.parametrize("stage", list(SLEEP_STAGES))
def test_format_then_parse_round_trips(stage):
    rules = [r.id for r in load_rules().values() if r.fits(stage)]
    for rationale in (None, "", "line\nbreak \"quote\" \\ back \x01 ctrl \u2028 \U0001F600 {}[]"):
        answer = parse_answer(format_answer(stage, rules, rationale))
        assert answer.ok and answer.repaired == []
        assert (answer.stage, answer.rules, answer.rationale) == (stage, rules, rationale)
        assert answer.coarse == (rationale is None)


@pytest.mark.parametrize("stage, rules, rationale", [
    ("N4", ["N3.1"], None), (Stage.UNSCORED, [], None), (Stage.ARTEFACT, [], None), ("n2", [], None),
    ("N2", "N2.1", None), ("N2", ["N2.1", "N2.1"], None), ("N2", [" N2.1"], None), ("N2", [2.1], None),
    ("N2", ["N2.1"], 42), ("N2", ["N2.1"], "half \ud800 pair"),
])
def test_format_answer_refuses_bad_training_targets(stage, rules, rationale):
    with pytest.raises(ValueError):
        format_answer(stage, rules, rationale)


# -- the model pack's own catalogue --------------------------------------------------------------

def test_custom_catalogue_from_a_model_pack():
    bundled = load_rules()
    extra = Rule(id="N2.5", stage=Stage.N2, ends=None, as_next=False, may_accompany=(Stage.N2,),
                 title="t", text="t", evidence="e", depends_on_neighbours=False)
    pack = {**bundled, "N2.5": extra}
    text = '{"applicable_rules": ["n2.5", "N2.1"], "sleep_stage": "N2"}'
    assert parse_answer(text).flags == ["unknown_rule:n2.5"]
    answer = parse_answer(text, rules=pack)
    assert answer.ok and answer.rules == ["N2.5", "N2.1"]
    assert parse_answer('{"applicable_rules": ["N2.5"], "sleep_stage": "W"}', rules=pack).flags == [
        "rule_stage_mismatch:N2.5"]
    # just IDs: known ones are still checked against the stage, the others only for existence
    ids_only = parse_answer('{"applicable_rules": ["Z.1", "R.1", "W.9"], "sleep_stage": "W"}',
                            rules=["Z.1", "R.1"])
    assert ids_only.flags == ["unknown_rule:W.9", "rule_stage_mismatch:R.1"]
