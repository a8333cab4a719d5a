"""The answer schema and GBNF grammar.

The grammar text is read back by a small GBNF reader below (the subset the grammar uses), which
turns it into a regular expression (to accept or reject strings) and into a random generator
(to sample strings *from the grammar text itself*). Every sample must be strict JSON in training
key order that parse_answer reads with no flags and no repairs. Where llama-cpp-python is
installed, llama.cpp itself parses the grammar (in a child process) and its grammar engine is run
over the same samples with a byte-level vocabulary written here as a vocab-only GGUF file.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from sleepvlm_ws.core.base.rules import Rule, load_rules, rule_ids
from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage
from sleepvlm_ws.core.model import grammar as grammar_module
from sleepvlm_ws.core.model.answer import format_answer, parse_answer
from sleepvlm_ws.core.model.grammar import answer_gbnf, answer_schema, validate_grammar_in_child

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(not HAVE_LLAMA, reason="llama-cpp-python is not installed")
KEYS_FINE = ["reasoning_text", "applicable_rules", "sleep_stage"]
KEYS_COARSE = ["applicable_rules", "sleep_stage"]


# -- a reader for the GBNF subset the grammar uses -----------------------------------------------

class _GbnfReader:
    """name ::= alternatives; literals, [classes], ( groups ), refs; postfix * + ? {m,n}."""

    _NAME = re.compile(r"[a-zA-Z0-9-]+")

    def __init__(self, body: str):
        self.s, self.i = body, 0

    def read(self):
        node = self.alt()
        self.blank()
        assert self.i == len(self.s), f"unexpected {self.s[self.i:]!r}"
        return node

    def blank(self):
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def alt(self):
        options = [self.seq()]
        while self.i < len(self.s) and self.s[self.i] == "|":
            self.i += 1
            options.append(self.seq())
        return options[0] if len(options) == 1 else ("alt", options)

    def seq(self):
        items = []
        while True:
            self.blank()
            if self.i >= len(self.s) or self.s[self.i] in "|)":
                return ("seq", items)
            items.append(self.postfix(self.atom()))

    def atom(self):
        c = self.s[self.i]
        if c == '"':
            self.i += 1
            text = []
            while self.s[self.i] != '"':
                text.append(self.char())
            self.i += 1
            return ("lit", "".join(text))
        if c == "[":
            self.i += 1
            negated = self.s[self.i] == "^"
            self.i += negated
            ranges = []
            while self.s[self.i] != "]":
                lo = self.char()
                hi = lo
                if self.s[self.i] == "-" and self.s[self.i + 1] != "]":
                    self.i += 1
                    hi = self.char()
                ranges.append((lo, hi))
            self.i += 1
            return ("cls", negated, ranges)
        if c == "(":
            self.i += 1
            node = self.alt()
            assert self.s[self.i] == ")"
            self.i += 1
            return node
        m = self._NAME.match(self.s, self.i)
        assert m, f"bad atom at {self.s[self.i:]!r}"
        self.i = m.end()
        return ("ref", m.group())

    def char(self) -> str:
        c = self.s[self.i]
        if c != "\\":
            self.i += 1
            return c
        e = self.s[self.i + 1]
        widths = {"x": 2, "u": 4, "U": 8}
        if e in widths:
            digits = self.s[self.i + 2:self.i + 2 + widths[e]]
            self.i += 2 + widths[e]
            return chr(int(digits, 16))
        self.i += 2
        return {"n": "\n", "t": "\t", "r": "\r"}.get(e, e)

    def postfix(self, node):
        if self.i >= len(self.s):
            return node
        c = self.s[self.i]
        if c in "*+?":
            self.i += 1
            return ("rep", node, {"*": 0, "+": 1, "?": 0}[c], {"*": None, "+": None, "?": 1}[c])
        if c == "{":
            end = self.s.index("}", self.i)
            lo, _, hi = self.s[self.i + 1:end].partition(",")
            self.i = end + 1
            return ("rep", node, int(lo), int(lo) if not _ else (int(hi) if hi else None))
        return node


def read_gbnf(text: str) -> dict:
    rules = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, body = line.split("::=", 1)
        rules[name.strip()] = _GbnfReader(body.strip()).read()
    return rules


def to_regex(rules: dict, node=("ref", "root"), active=()) -> str:
    kind = node[0]
    if kind == "lit":
        return re.escape(node[1])
    if kind == "cls":
        body = "".join(f"\\U{ord(lo):08x}-\\U{ord(hi):08x}" for lo, hi in node[2])
        return f"[{'^' if node[1] else ''}{body}]"
    if kind == "alt":
        return "(?:" + "|".join(to_regex(rules, n, active) for n in node[1]) + ")"
    if kind == "seq":
        return "".join(to_regex(rules, n, active) for n in node[1])
    if kind == "rep":
        hi = "" if node[3] is None else node[3]
        return f"(?:{to_regex(rules, node[1], active)}){{{node[2]},{hi}}}"
    assert node[1] not in active, f"recursive rule {node[1]}"
    return "(?:" + to_regex(rules, rules[node[1]], active + (node[1],)) + ")"


# characters to draw from for negated classes: all of ASCII and a spread of the rest
_POOL = [chr(c) for c in range(0x80)] + list(
    "\u00a0\u00b5\u00e9\u00df\u03b1\u2014\u201c\u201d\u2019\u2028\u2029\ufeff\ufffd\u4e2d\u200b\x7f\x80\x9f"
    "\U0001F600\U00010348")


def generate(rules: dict, rng: random.Random, node=("ref", "root")) -> str:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "cls":
        inside = lambda ch: any(lo <= ch <= hi for lo, hi in node[2])  # noqa: E731
        if node[1]:
            return rng.choice([ch for ch in _POOL if not inside(ch)])
        lo, hi = rng.choice(node[2])
        return chr(rng.randint(ord(lo), ord(hi)))
    if kind == "alt":
        return generate(rules, rng, rng.choice(node[1]))
    if kind == "seq":
        return "".join(generate(rules, rng, n) for n in node[1])
    if kind == "rep":
        lo, hi = node[2], node[3]
        if hi is None:
            hi = lo + rng.choice([0, 3, 30, 30, 400])
        return "".join(generate(rules, rng, node[1]) for _ in range(rng.randint(lo, hi)))
    return generate(rules, rng, rules[node[1]])


@pytest.fixture(scope="module")
def grammars():
    ids = rule_ids()
    out = {}
    for coarse in (False, True):
        text = answer_gbnf(coarse, ids)
        parsed = read_gbnf(text)
        out[coarse] = (text, parsed, re.compile(to_regex(parsed), re.DOTALL))
    return out


@pytest.fixture(scope="module")
def samples(grammars):
    rng = random.Random(20261124)
    return {coarse: [generate(grammars[coarse][1], rng) for _ in range(1200 if not coarse else 400)]
            for coarse in (False, True)}


# -- samples drawn from the grammar text ---------------------------------------------------------

@pytest.mark.parametrize("coarse", [False, True])
def test_every_sample_is_strict_json_that_parses_without_flags(grammars, samples, coarse):
    matcher = grammars[coarse][2]
    stages, cited = set(), set()
    escapes = non_ascii = blanks = 0
    for text in samples[coarse]:
        assert matcher.fullmatch(text), text
        pairs = json.loads(text, object_pairs_hook=list)  # strict: no raw control characters
        assert [k for k, _ in pairs] == (KEYS_COARSE if coarse else KEYS_FINE)
        answer = parse_answer(text)
        assert answer.flags == [] and answer.ok, (text, answer.flags)
        assert [r for r in answer.repaired if r != "duplicate_rule"] == [], (text, answer.repaired)
        assert answer.coarse == coarse
        if not coarse:
            assert answer.rationale == dict(pairs)["reasoning_text"]
            escapes += "\\" in text
            non_ascii += any(ord(ch) > 127 for ch in answer.rationale)
        stages.add(answer.stage)
        cited.update(answer.rules)
        blanks += "\n" in text
    # the sampler really explored the grammar
    assert stages == set(SLEEP_STAGES)
    assert cited == set(rule_ids())
    assert blanks > 0
    if not coarse:
        assert escapes > 100 and non_ascii > 100


def test_samples_match_the_schema(samples):
    for coarse in (False, True):
        schema = answer_schema(coarse, rule_ids())
        props = schema["properties"]
        for text in samples[coarse][:300]:
            obj = json.loads(text)
            assert list(obj) == schema["required"]
            assert obj["sleep_stage"] in props["sleep_stage"]["enum"]
            assert all(r in props["applicable_rules"]["items"]["enum"] for r in obj["applicable_rules"])


def _fitting(stage: Stage) -> list[str]:
    return [r.id for r in load_rules().values() if r.fits(stage)]


@pytest.mark.parametrize("coarse", [False, True])
def test_grammar_accepts_every_legitimate_answer(grammars, coarse):
    matcher = grammars[coarse][2]
    rationale = None if coarse else 'Spindle at 4 s; "quoted"; tab\t; \u03b1 \U0001F600 \x01 \\'
    count = 0
    for stage in SLEEP_STAGES:
        fitting = _fitting(stage)
        for size in range(len(fitting) + 1):
            for chosen in itertools.combinations(fitting, size):
                text = format_answer(stage, list(chosen), rationale)
                assert matcher.fullmatch(text), text
                pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
                assert matcher.fullmatch(pretty), pretty
                count += 1
    assert count == 2 ** 7 + 2 ** 5 + 2 ** 5 + 2 ** 4 + 2 ** 4


REJECTED_FINE = [
    '{"reasoning_text": "x", "applicable_rules": ["R.1"], "sleep_stage": "W"}',  # rule of another stage
    '{"reasoning_text": "x", "applicable_rules": ["N2.4"], "sleep_stage": "N2"}',  # N2.4 ends N2
    '{"reasoning_text": "x", "applicable_rules": ["MBM.1"], "sleep_stage": "R"}',
    '{"reasoning_text": "x", "applicable_rules": ["X.9"], "sleep_stage": "W"}',  # unknown rule
    '{"reasoning_text": "x", "applicable_rules": ["W.1"], "sleep_stage": "N4"}',  # not a stage
    '{"reasoning_text": "x", "applicable_rules": ["W.1"], "sleep_stage": "w"}',
    '{"reasoning_text": "x", "applicable_rules": ["W.1"], "sleep_stage": "?"}',
    '{"applicable_rules": ["W.1"], "sleep_stage": "W", "reasoning_text": "x"}',  # key order
    '{"applicable_rules": ["W.1"], "sleep_stage": "W"}',  # rationale missing
    '{"reasoning_text": "a\nb", "applicable_rules": ["W.1"], "sleep_stage": "W"}',  # raw newline
    '{"reasoning_text": "a\x00b", "applicable_rules": ["W.1"], "sleep_stage": "W"}',  # raw NUL
    '{"reasoning_text": "a\\ud800b", "applicable_rules": ["W.1"], "sleep_stage": "W"}',  # lone surrogate
    '{"reasoning_text": "a\\xb", "applicable_rules": ["W.1"], "sleep_stage": "W"}',  # not a JSON escape
    '{"reasoning_text": "a"b", "applicable_rules": ["W.1"], "sleep_stage": "W"}',  # unescaped quote
    '{"reasoning_text": "x", "applicable_rules": ["W.1",], "sleep_stage": "W"}',  # trailing comma
    '{"reasoning_text": "x", "applicable_rules": "W.1", "sleep_stage": "W"}',  # rules as a string
    "{'reasoning_text': 'x', 'applicable_rules': ['W.1'], 'sleep_stage': 'W'}",  # single quotes
    '{\u201creasoning_text\u201d: "x", "applicable_rules": ["W.1"], "sleep_stage": "W"}',  # smart quotes
    '{"reasoning_text": "x",' + " " * 13 + '"applicable_rules": [], "sleep_stage": "W"}',  # runaway blanks
    '{"reasoning_text": "x", "applicable_rules": ["W.1"], "sleep_stage": "W"} ',  # anything after the object
    '```json\n{"reasoning_text": "x", "applicable_rules": ["W.1"], "sleep_stage": "W"}\n```',
    '{"reasoning_text": "x", "applicable_rules": '
    '["W.1", "W.2", "W.3", "N2.4", "R.3", "MBM.1", "MBM.2", "W.1"], "sleep_stage": "W"}',  # more than W has
]


def test_grammar_rejects_what_it_must(grammars):
    fine = grammars[False][2]
    for text in REJECTED_FINE:
        assert not fine.fullmatch(text), text
    twelve = '{"reasoning_text": "x",' + " " * 12 + '"applicable_rules": [], "sleep_stage": "W"}'
    assert fine.fullmatch(twelve)
    coarse = grammars[True][2]
    assert not coarse.fullmatch(format_answer("W", ["W.1"], "x"))
    assert coarse.fullmatch(format_answer("W", ["W.1"]))


def test_grammar_shape(grammars):
    text = grammars[False][0]
    assert text.endswith("\n") and "root ::=" in text
    assert text.index('"\\"reasoning_text\\""') < text.index('"\\"applicable_rules\\""') < text.index(
        '"\\"sleep_stage\\""')
    assert "reasoning_text" not in grammars[True][0].replace("# SleepVLM answer: coarse", "")
    bounded = read_gbnf(answer_gbnf(False, rule_ids(), max_rationale_chars=5))
    matcher = re.compile(to_regex(bounded), re.DOTALL)
    assert matcher.fullmatch(format_answer("W", [], "12345"))
    assert not matcher.fullmatch(format_answer("W", [], "123456"))


def test_custom_rule_ids_are_escaped_and_go_with_every_stage():
    odd = ['Q"1', "Q\\2", "\u00c9.3", "W.1"]
    text = answer_gbnf(True, odd)
    matcher = re.compile(to_regex(read_gbnf(text)), re.DOTALL)
    for stage in SLEEP_STAGES:
        assert matcher.fullmatch(json.dumps({"applicable_rules": ['Q"1', "Q\\2", "\u00c9.3"],
                                             "sleep_stage": stage.value}))
    assert matcher.fullmatch(json.dumps({"applicable_rules": ["W.1"], "sleep_stage": "W"}))
    assert not matcher.fullmatch(json.dumps({"applicable_rules": ["W.1"], "sleep_stage": "N2"}))
    pack = {"Z.1": Rule(id="Z.1", stage=Stage.N3, ends=None, as_next=False, may_accompany=(Stage.N3,),
                        title="t", text="t", evidence="e", depends_on_neighbours=False)}
    only_n3 = re.compile(to_regex(read_gbnf(answer_gbnf(True, ["Z.1"], catalogue=pack))), re.DOTALL)
    assert only_n3.fullmatch('{"applicable_rules": ["Z.1"], "sleep_stage": "N3"}')
    assert not only_n3.fullmatch('{"applicable_rules": ["Z.1"], "sleep_stage": "N2"}')
    assert only_n3.fullmatch('{"applicable_rules": [], "sleep_stage": "N2"}')


@pytest.mark.parametrize("bad", ["N2.1", ["N2.1", ""], ["N2.1", " N2.2"], ["N2.1", None]])
def test_bad_rule_ids_are_refused(bad):
    with pytest.raises(ValueError):
        answer_gbnf(False, bad)
    with pytest.raises(ValueError):
        answer_schema(False, bad)


def test_schema():
    ids = rule_ids()
    fine = answer_schema(False, ids)
    assert list(fine["properties"]) == KEYS_FINE and fine["required"] == KEYS_FINE
    assert fine["additionalProperties"] is False
    assert fine["properties"]["sleep_stage"]["enum"] == ["W", "N1", "N2", "N3", "R"]
    assert fine["properties"]["applicable_rules"]["items"]["enum"] == ids
    assert fine["properties"]["applicable_rules"]["maxItems"] == 15
    assert "maxLength" not in fine["properties"]["reasoning_text"]
    bounded = answer_schema(False, ids, max_rationale_chars=grammar_module.MAX_RATIONALE_CHARS)
    assert bounded["properties"]["reasoning_text"]["maxLength"] == 4096
    coarse = answer_schema(True, ids, max_rationale_chars=100)
    assert list(coarse["properties"]) == KEYS_COARSE and coarse["required"] == KEYS_COARSE
    json.dumps(fine)  # plain JSON, ready for response_format


# -- llama.cpp itself ----------------------------------------------------------------------------

@needs_llama
@pytest.mark.parametrize("variant", ["fine", "coarse", "fine_bounded"])
def test_llama_cpp_accepts_the_grammar(variant):
    text = answer_gbnf(variant == "coarse", rule_ids(),
                       max_rationale_chars=4000 if variant == "fine_bounded" else None)
    assert validate_grammar_in_child(text) == (True, "ok")


@needs_llama
@pytest.mark.parametrize("broken, reason", [
    ('root ::= "{" ws', "Undefined rule identifier 'ws'"),
    ('root ::= "unterminated', "unexpected end of input"),
    ("root ::= [a-", "unexpected end of input"),
    ('root ::= ( "a" | "b"', "expecting ')'"),
    ('answer ::= "a"', "does not contain a 'root' symbol"),
])
def test_broken_grammar_is_reported_and_we_survive(broken, reason):
    ok, message = validate_grammar_in_child(broken)
    assert ok is False
    assert reason in message and "\n" not in message


@needs_llama
def test_a_broken_answer_grammar_is_reported():
    text = answer_gbnf(False, rule_ids()).replace("hex ::= [0-9a-fA-F]\n", "")
    ok, message = validate_grammar_in_child(text)
    assert not ok and "hex" in message


@needs_llama
def test_llama_cpp_schema_converter_accepts_our_schema():
    code = ("import json, sys\nfrom llama_cpp.llama_grammar import json_schema_to_gbnf\n"
            "sys.stdout.write(json_schema_to_gbnf(sys.stdin.read()))\n")
    for coarse, bound in ((False, None), (True, None), (False, 1000)):
        schema = json.dumps(answer_schema(coarse, rule_ids(), max_rationale_chars=bound))
        done = subprocess.run([sys.executable, "-c", code], input=schema, capture_output=True, text=True,
                              timeout=60, check=True)
        assert validate_grammar_in_child(done.stdout) == (True, "ok")


def test_child_crash_and_hang_are_reported():
    status, out, err = grammar_module._run_child("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
                                                 b"", 30)
    assert status == -11
    ok, message = grammar_module._child_verdict(status, out, err, 30)
    assert not ok and "crashed (SIGSEGV)" in message
    status, out, err = grammar_module._run_child("import time; time.sleep(30)", b"", 0.5)
    assert status is None
    assert grammar_module._child_verdict(status, out, err, 0.5) == (
        False, "grammar check did not finish within 0.5 s")


@pytest.mark.parametrize("bad", ["", "   \n", "root ::= \"a\"\x00", "root ::= \"\ud800\""])
def test_empty_or_nul_grammar_is_refused_without_a_child(bad):
    ok, message = validate_grammar_in_child(bad)
    assert not ok and message


def _gguf_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _gguf_kv(key: str, kind: int, payload: bytes) -> bytes:
    return _gguf_string(key) + struct.pack("<I", kind) + payload


def write_byte_vocab_gguf(path: Path) -> None:
    """A vocab-only GGUF: <unk>, <s>, </s> and one token per byte (<0x00> ... <0xFF>)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    kinds = [2, 3, 3] + [6] * 256  # unknown, control, control, byte
    u32 = lambda v: struct.pack("<I", v)  # noqa: E731
    kvs = [
        _gguf_kv("general.architecture", 8, _gguf_string("llama")),
        _gguf_kv("llama.context_length", 4, u32(64)),
        _gguf_kv("llama.embedding_length", 4, u32(8)),
        _gguf_kv("llama.block_count", 4, u32(1)),
        _gguf_kv("llama.feed_forward_length", 4, u32(16)),
        _gguf_kv("llama.attention.head_count", 4, u32(1)),
        _gguf_kv("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
        _gguf_kv("tokenizer.ggml.model", 8, _gguf_string("llama")),
        _gguf_kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(tokens))
                 + b"".join(_gguf_string(t) for t in tokens)),
        _gguf_kv("tokenizer.ggml.scores", 9,
                 struct.pack("<IQ", 6, len(tokens)) + struct.pack(f"<{len(tokens)}f", *[0.0] * len(tokens))),
        _gguf_kv("tokenizer.ggml.token_type", 9,
                 struct.pack("<IQ", 5, len(kinds)) + struct.pack(f"<{len(kinds)}i", *kinds)),
        _gguf_kv("tokenizer.ggml.bos_token_id", 4, u32(1)),
        _gguf_kv("tokenizer.ggml.eos_token_id", 4, u32(2)),
        _gguf_kv("tokenizer.ggml.unknown_token_id", 4, u32(0)),
    ]
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)
    path.write_bytes(data + b"\0" * (-len(data) % 32))


# Runs llama.cpp's grammar engine byte by byte: for each string, "complete" (every byte allowed and
# end-of-generation allowed after it), "incomplete" or "rejected".
_ENGINE = r"""
import ctypes, json, math, sys
import llama_cpp
_quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)
llama_cpp.llama_log_set(_quiet, ctypes.c_void_p(0))
vocab_path, grammar_path, strings_path = sys.argv[1:4]
params = llama_cpp.llama_model_default_params()
params.vocab_only = True
model = llama_cpp.llama_model_load_from_file(vocab_path.encode(), params)
assert model, "vocab did not load"
vocab = llama_cpp.llama_model_get_vocab(model)
assert llama_cpp.llama_vocab_n_tokens(vocab) == 259
sampler = llama_cpp.llama_sampler_init_grammar(vocab, open(grammar_path, "rb").read(), b"root")
assert sampler, "grammar refused"
data = (llama_cpp.llama_token_data * 1)()
def allowed(token):
    data[0].id, data[0].logit, data[0].p = token, 0.0, 0.0
    arr = llama_cpp.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(arr))
    return not math.isinf(data[0].logit)
results = []
for text in json.load(open(strings_path, encoding="utf-8")):
    llama_cpp.llama_sampler_reset(sampler)
    verdict = None
    for byte in text.encode("utf-8"):
        if not allowed(3 + byte):
            verdict = "rejected"
            break
        llama_cpp.llama_sampler_accept(sampler, 3 + byte)
    results.append(verdict or ("complete" if allowed(2) else "incomplete"))
json.dump(results, sys.stdout)
"""


def _run_engine(tmp_path: Path, grammar_text: str, strings: list[str]) -> list[str]:
    vocab = tmp_path / "byte-vocab.gguf"
    if not vocab.exists():
        write_byte_vocab_gguf(vocab)
    gpath = tmp_path / "answer.gbnf"
    gpath.write_text(grammar_text, encoding="utf-8")
    spath = tmp_path / "strings.json"
    spath.write_text(json.dumps(strings), encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", _ENGINE, str(vocab), str(gpath), str(spath)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@needs_llama
@pytest.mark.parametrize("coarse", [False, True])
def test_llama_cpp_grammar_engine_agrees(tmp_path, grammars, samples, coarse):
    text, _, matcher = grammars[coarse]
    accepted = samples[coarse][:250] + [
        format_answer(stage, _fitting(stage)[:2], None if coarse else "a \u03b1 \U0001F600 \\n \"q\"")
        for stage in SLEEP_STAGES]
    rejected = [s for s in REJECTED_FINE if not coarse] + [
        '{"applicable_rules": ["R.1"], "sleep_stage": "W"}',
        '{"applicable_rules": ["W.1"], "sleep_stage": "N4"}',
    ]
    cut = [format_answer("N2", ["N2.1"], None if coarse else "abc")[:-1]]
    results = _run_engine(tmp_path, text, accepted + rejected + cut)
    assert results[:len(accepted)] == ["complete"] * len(accepted)
    assert "complete" not in results[len(accepted):-1]
    assert results[-1] == "incomplete"
    for string in rejected:
        assert not matcher.fullmatch(string)  # our regex reading agrees with llama.cpp
