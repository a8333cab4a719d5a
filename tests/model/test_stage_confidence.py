"""The model's stage probabilities: where the grammar decides the stage (checked against
llama.cpp's own grammar engine on both real vocabularies), the logprob reading by hand, and the
local runtime on the trained default pack (real weights: probabilities that mean something)
and on the tiny random-weight Qwen2.5 pack (real tokenizer: the accounting)."""

from __future__ import annotations

import collections
import math
from pathlib import Path

import pytest

from sleepvlm_ws.core.base.probabilities import format_percent, probabilities_from_json, probabilities_to_json
from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.model.answer import format_answer, parse_answer
from sleepvlm_ws.core.model.grammar import answer_gbnf
from sleepvlm_ws.core.model.model_pack import SLEEPVLM_RULE_IDS
from sleepvlm_ws.core.model.stage_confidence import (ALL_STAGES, MAX_UNRESOLVED, AnswerScanner,
                                                     distribution_from_logprobs, stage_rule_table)

W, N1, N2, N3, R = SLEEP_STAGES
RULES = stage_rule_table(SLEEPVLM_RULE_IDS)
DEFAULT_PACK = Path(__file__).resolve().parents[2] / "models" / "default"


def _stages(text: str) -> frozenset:
    return AnswerScanner(RULES).feed(text).stages


# ------------------------------------------------------------------------- the scanner
def test_the_rule_ids_decide_the_stage_character_by_character():
    head = '{"applicable_rules": ["'
    assert _stages(head) == ALL_STAGES
    assert _stages(head + "N") == ALL_STAGES             # N2.4 may accompany W, N1, N3, R
    assert _stages(head + "N1") == {N1}
    assert _stages(head + "N2.") == ALL_STAGES
    assert _stages(head + "N2.1") == {N2}
    assert _stages(head + 'N2.4"') == {W, N1, N3, R}
    assert _stages(head + 'N2.4", "R.3"') == {W, N1, N3}
    assert _stages(head + "W") == {W}
    assert _stages(head + "M") == ALL_STAGES             # MBM.2 fits every stage
    assert _stages(head + "MBM.1") == {W}


def test_an_empty_rule_list_leaves_the_stage_field_to_decide():
    text = '{"applicable_rules": [], "sleep_stage": "'
    assert _stages(text) == ALL_STAGES
    assert _stages(text + "N") == {N1, N2, N3}
    assert _stages(text + "N3") == {N3}
    assert _stages(text + 'R"}') == {R}
    scanner = AnswerScanner(RULES).feed(text + 'W" }')
    assert scanner.state == "closed" and scanner.decided


def test_the_grammar_s_rule_count_limit_counts():
    # six rules: only W may list that many (N1 and N2 five, N3 and R four)
    text = '{"applicable_rules": [' + ", ".join(['"MBM.2"'] * 6)
    assert _stages(text) == {W}
    assert _stages('{"applicable_rules": [' + ", ".join(['"MBM.2"'] * 5)) == {W, N1, N2}


def test_the_rationale_cannot_start_the_verdict():
    rationale = 'He wrote \\"applicable_rules\\": [\\"W.1\\"] and "'
    scanner = AnswerScanner(RULES).feed('{"reasoning_text": "applicable_rules')
    assert not scanner.started and scanner.stages == ALL_STAGES     # a value, not a key
    scanner = AnswerScanner(RULES).feed('{"reasoning_text": "' + rationale[:-1] + '", ')
    assert scanner.stages == ALL_STAGES and scanner.state == "pre"
    scanner.feed('"applicable_rules": ["R.1"')
    assert scanner.stages == {R}


def test_text_outside_the_grammar_reaches_no_stage():
    for text in ('{"applicable_rules": ["X', '{"applicable_rules": ["N2.1"], "stage": "N2"}',
                 '{"applicable_rules": ["N2.1"], "sleep_stage": "N3"',
                 '{"applicable_rules": {', '{"applicable_rules": [], "sleep_stage": "N2"}x'):
        scanner = AnswerScanner(RULES).feed(text)
        assert scanner.stages == frozenset() and not scanner.valid, text


def test_forced_text_is_what_training_wrote_next():
    assert AnswerScanner(RULES).feed('{"applicable_rules": [],').forced_text() == \
        ' "sleep_stage": "'
    assert AnswerScanner(RULES).feed('{"applicable_rules": ["N2').forced_text() == "."
    assert AnswerScanner(RULES).feed('{"applicable_rules": ["MB').forced_text() == "M."
    assert AnswerScanner(RULES).feed('{"applicable_rules": ["N3').forced_text() == '.1"'
    assert AnswerScanner(RULES).feed('{"applicable_rules": ["').forced_text() == ""


def test_probability_helpers():
    assert format_percent(0.873) == "87 %" and format_percent(None) == "\u2014"
    assert format_percent(0.001) == "<1 %" and format_percent(0.999) == ">99 %"
    assert format_percent(1.0) == "100 %" and format_percent(0.0) == "0 %"
    p = {W: 0.1, N1: 0.2, N2: 0.7, N3: 0.0, R: 0.0}
    assert probabilities_to_json(p) == {"W": 0.1, "N1": 0.2, "N2": 0.7, "N3": 0.0, "R": 0.0}
    assert probabilities_from_json(probabilities_to_json(p)) == p
    assert probabilities_from_json({"W": 0.5, "N1": 0.6, "N2": 0, "N3": 0, "R": 0}) is None
    assert probabilities_from_json({"W": 1.0}) is None and probabilities_from_json(None) is None


# ----------------------------------------------------------------- a server's logprobs
def _entry(token, p, *alternatives):
    return {"token": token, "logprob": math.log(p),
            "top_logprobs": [{"token": t, "logprob": math.log(q)} for t, q in alternatives]}


def test_stage_probabilities_from_top_logprobs_by_hand():
    content = [
        _entry('{"', 1.0), _entry("applicable", 1.0), _entry("_rules", 1.0), _entry('":', 1.0),
        _entry(' ["', 0.9, (' [],', 0.1)),            # an empty list: several stages, unresolved
        _entry("N", 0.5, ("W", 0.3), ("X", 0.2)),      # W decides; X is not in the grammar
        _entry("2", 0.75, ("3", 0.25)),                # N3.1 decides
        _entry(".", 1.0),
        _entry("1", 0.96, ("4", 0.04)),                # N2.4 leaves four stages: unresolved
        _entry('"],', 1.0), _entry(' "', 1.0), _entry("sleep", 1.0), _entry("_stage", 1.0),
        _entry('":', 1.0), _entry(' "', 1.0), _entry("N", 1.0), _entry("2", 1.0), _entry('"}', 1.0),
    ]
    dist = distribution_from_logprobs(content, RULES, N2)
    # by hand: after ' ["' mass 0.9 (0.1 unresolved); at N: W takes 0.9 * 0.3/0.8 = 0.3375,
    # mass 0.5625; at 2: N3 takes 0.5625 * 0.25 = 0.140625, mass 0.421875; at 1: 0.016875
    # unresolved, N2 takes 0.405. Resolved 0.883125, normalised over it.
    resolved = 0.3375 + 0.140625 + 0.405
    assert resolved == pytest.approx(1 - 0.1 - 0.016875)
    assert dist.probabilities[W] == pytest.approx(0.3375 / resolved)
    assert dist.probabilities[N3] == pytest.approx(0.140625 / resolved)
    assert dist.probabilities[N2] == pytest.approx(0.405 / resolved) == dist.probability
    assert dist.probabilities[N1] == 0 and dist.probabilities[R] == 0
    assert dist.unresolved == pytest.approx(0.116875)
    assert dist.path_probability == pytest.approx(0.405)
    assert dist.most_likely is N2
    # the answer's own stage must be the one decided; garbage or no list gives nothing
    assert distribution_from_logprobs(content, RULES, N3) is None
    assert distribution_from_logprobs([], RULES, N2) is None
    assert distribution_from_logprobs([{"token": 3}], RULES, N2) is None
    # too much mass unresolved: no probabilities rather than made-up ones
    heavy = list(content)
    heavy[4] = _entry(' ["', 0.7, (' [],', 0.3))
    assert 0.3 > MAX_UNRESOLVED and distribution_from_logprobs(heavy, RULES, N2) is None


# ------------------------------------------------------ against llama.cpp's grammar engine
def _stage_gbnf(coarse: bool, stage: Stage) -> str:
    """The answer grammar with only ``stage``'s verdict: the language of answers ending in it."""
    lines = answer_gbnf(coarse, SLEEPVLM_RULE_IDS).splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("verdict ::="))
    lines[i] = f"verdict ::= verdict-{stage.value.lower()}"
    return "\n".join(lines) + "\n"


TEXTS = [
    format_answer("N2", ["N2.1", "N2.2"]), format_answer("W", ["N2.4", "R.3", "MBM.2"]),
    format_answer("N1", []), format_answer("R", ["MBM.2"]), format_answer("N3", ["N2.4", "N3.1"]),
    '{ "applicable_rules" :[ "R.3" ,"MBM.2"],\n"sleep_stage":"N2" }',
    '{"applicable_rules": [' + ", ".join(['"MBM.2"'] * 6) + '], "sleep_stage": "W"}',
    format_answer("N2", ["N2.1"], 'He said "applicable_rules": ["W.1"], "sleep_stage": "W"'),
]


@pytest.mark.parametrize("which", ["default", "tiny"])
def test_the_scanner_agrees_with_llama_cpp_token_by_token(which, request):
    llama_cpp = pytest.importorskip("llama_cpp")
    from sleepvlm_ws.core.model.greedy_decode import GrammarGuide
    from sleepvlm_ws.core.model.model_pack import verify_pack

    pack = DEFAULT_PACK if which == "default" else request.getfixturevalue("tiny_pack")
    llama = llama_cpp.Llama(model_path=str(verify_pack(pack, cache=False).lm_path),
                            vocab_only=True, verbose=False)
    checked = 0
    for text in TEXTS:
        coarse = '"reasoning_text"' not in text
        guides = {s: GrammarGuide(llama, _stage_gbnf(coarse, s)) for s in SLEEP_STAGES}
        alive = set(SLEEP_STAGES)
        scanner = AnswerScanner(RULES)
        for token in llama.tokenize(text.encode("utf-8"), add_bos=False, special=False):
            for s in list(alive):
                if guides[s].allows(token):
                    guides[s].accept(token)
                else:
                    alive.discard(s)
            scanner.feed(llama.detokenize([token]).decode("latin-1"))
            assert scanner.stages == alive, (which, text, scanner.stages, alive)
            checked += 1
        assert len(alive) == 1 and parse_answer(text).stage in alive
        for guide in guides.values():
            guide.close()
    assert checked > 100
    llama.close()


# ------------------------------------------------------------- the local runtime, trained
@pytest.fixture(scope="module")
def epochs():
    from sleepvlm_ws.core.model.request import request_images
    from sleepvlm_ws.core.signals.render import PAD_S, EpochWindow, epoch_window_span, render_png
    from sleepvlm_ws.core.synth import generate_night

    stages = [W, W, N1, N2, N2, N3, N3, N2, R, R, W]
    fs = 128.0
    night = generate_night(seed=7, stages=stages, fs=fs)
    pngs = []
    for e in range(len(stages)):
        span = epoch_window_span(e, len(stages) * 30.0)
        a, b = int(round(span.start_s * fs)), int(round(span.stop_s * fs))
        pngs.append(render_png(EpochWindow({r: (x[a:b], fs) for r, x in night.signals.items()},
                                           pad_s=PAD_S, pad_before_s=span.pad_before_s,
                                           pad_after_s=span.pad_after_s)))
    return [request_images(pngs[e - 1] if e else None, pngs[e],
                           pngs[e + 1] if e + 1 < len(pngs) else None) for e in range(len(pngs))]


@pytest.fixture(scope="module")
def default_runtime():
    pytest.importorskip("llama_cpp")
    from sleepvlm_ws.core.model.runtime import LocalRuntime

    with LocalRuntime(DEFAULT_PACK, n_threads=1) as rt:
        yield rt


def test_every_answer_has_five_probabilities_and_the_same_text_as_without(default_runtime,
                                                                           epochs):
    from sleepvlm_ws.core.model.runtime import LocalRuntime

    with LocalRuntime(DEFAULT_PACK, n_threads=1, confidence=False) as plain:
        for e, images in enumerate(epochs):
            got = default_runtime.suggest(images, rationale=False)
            assert got.raw == plain.suggest(images, rationale=False).raw, e   # decoding unchanged
            c = got.confidence
            assert c is not None and c.chosen is got.answer.stage, (e, got.raw)
            p = got.stage_probabilities
            assert set(p) == set(SLEEP_STAGES) and all(0.0 <= v <= 1.0 for v in p.values())
            assert sum(p.values()) == pytest.approx(1.0, abs=1e-9)
            assert got.stage_probability == p[got.answer.stage]
            assert 0 <= c.unresolved <= MAX_UNRESOLVED and c.extra_decodes <= 8
            # the greedy path's own mass is part of its stage's
            assert got.stage_probability >= c.path_probability - 1e-12
            # given the same prefix the greedy stage is the most probable one whenever the greedy
            # path alone holds more than half the mass (then no other stage can outweigh it)
            if c.path_probability > 0.5:
                assert c.most_likely is got.answer.stage, (e, p)
        assert plain.suggest(epochs[3], rationale=False).confidence is None


def test_the_rationale_pass_has_probabilities_too(default_runtime, epochs):
    got = default_runtime.suggest(epochs[3], rationale=True, max_tokens=400)
    assert got.answer.rationale and got.finish_reason == "stop"
    assert got.stage_probability is not None and got.confidence.chosen is got.answer.stage


def test_the_probabilities_match_what_sampling_under_the_grammar_gives(default_runtime, epochs):
    """llama-cpp-python's own sampler chain (grammar, then temperature 1: the constrained
    distribution) draws answers whose stages fall as the computed probabilities say."""
    from llama_cpp.llama_grammar import LlamaGrammar

    from sleepvlm_ws.core.model.request import build_messages

    rt = default_runtime
    # the least certain of the night's answers makes the check sharpest
    answers = [(rt.suggest(images, rationale=False), images) for images in epochs[1:9]]
    got, images = min(answers, key=lambda a: max(a[0].stage_probabilities.values()))
    expected = got.stage_probabilities
    assert max(expected.values()) < 0.995, expected      # else this test would prove nothing
    handler, llama = rt._handler, rt._llama
    text, urls = handler.render_prompt(llama, build_messages(rt.system_prompt, images))
    handler.evaluate_prompt(llama, text, [handler.load_image(u) for u in urls], 64)
    prompt = llama.input_ids[: llama.n_tokens].tolist()
    grammar = LlamaGrammar.from_string(rt.grammar_text(rationale=False), verbose=False)
    n = 300
    counts = collections.Counter()
    for seed in range(1, n + 1):
        out = llama.create_completion(prompt=prompt, max_tokens=64, temperature=1.0, top_k=0,
                                      top_p=1.0, min_p=0.0, repeat_penalty=1.0, seed=seed,
                                      grammar=grammar)
        counts[parse_answer(out["choices"][0]["text"]).stage] += 1
    handler.forget()                                   # the next request starts afresh
    for stage in SLEEP_STAGES:
        p = expected[stage]
        sigma = math.sqrt(max(p * (1 - p), 1e-4) / n)
        assert abs(counts[stage] / n - p) <= 4 * sigma + 0.01, (stage, counts, expected)


# --------------------------------------------------------- the tiny pack: the accounting
def test_with_a_real_qwen_tokenizer_every_bit_of_mass_is_accounted_for(tiny_pack, epochs):
    """Random weights spread their mass over thousands of whitespace variants, so the answer
    has no probabilities (too much unresolved); the accounting must still add up to 1."""
    pytest.importorskip("llama_cpp")
    from sleepvlm_ws.core.model.runtime import LocalRuntime

    with LocalRuntime(tiny_pack, n_threads=1, verify_cache=False) as rt:
        got = rt.suggest(epochs[2], rationale=False)
        probe = rt._handler._probe
        assert probe.chosen is got.answer.stage and got.answer.stage is not None
        resolved = sum(probe.tally.mass.values())
        assert resolved + probe.tally.unresolved == pytest.approx(1.0, abs=1e-6)
        assert probe.extra_decodes == probe.max_extra_decodes      # the budget was spent
        assert (got.confidence is None) == (probe.tally.unresolved > MAX_UNRESOLVED)
