"""The local runtime on a real (tiny, random-weight) Qwen2.5-VL pack through llama-cpp-python.

Random weights say nothing useful, but everything around them is real: the pack check, the
GGUF chat template, libmtmd's image path, the grammar, the KV cache. Answers must be
grammar-valid JSON, and keeping the system prompt's KV cache (and image embeddings) must not
change a single logit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

from llama_cpp import Llama  # noqa: E402
from llama_cpp.llama_chat_format import MTMDChatHandler  # noqa: E402
from llama_cpp.llama_grammar import LlamaGrammar  # noqa: E402
from packs import copy_pack  # noqa: E402

from sleepvlm_ws.core.base.stages import SLEEP_STAGES, Stage  # noqa: E402
from sleepvlm_ws.core.model.answer import RATIONALE_KEY, RULES_KEY, STAGE_KEY  # noqa: E402
from sleepvlm_ws.core.model.kv_handler import PromptKVChatHandler  # noqa: E402
from sleepvlm_ws.core.model.model_pack import verify_pack  # noqa: E402
from sleepvlm_ws.core.model.request import EDGE_FLAG, build_messages, request_images  # noqa: E402
from sleepvlm_ws.core.model.runtime import LocalRuntime  # noqa: E402
from sleepvlm_ws.core.signals.render import PAD_S, EpochWindow, epoch_window_span, render_png  # noqa: E402
from sleepvlm_ws.core.synth import generate_night  # noqa: E402
from sleepvlm_ws.errors import ModelPackError  # noqa: E402

STAGES = [Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R]
# One thread: llama.cpp's spinning thread pool slows down tenfold on an oversubscribed CI box,
# and the thread count changes rounding (so compared runs must share it).
THREADS = 1


@pytest.fixture(scope="module")
def epoch_pngs() -> list[bytes]:
    """Rendered SleepVLM images of a short synthetic night, one per epoch."""
    fs = 128.0
    night = generate_night(seed=3, stages=STAGES, fs=fs)
    duration = len(STAGES) * 30.0
    pngs = []
    for epoch in range(len(STAGES)):
        span = epoch_window_span(epoch, duration)
        a, b = int(round(span.start_s * fs)), int(round(span.stop_s * fs))
        signals = {role: (x[a:b], fs) for role, x in night.signals.items()}
        pngs.append(render_png(EpochWindow(signals, pad_s=PAD_S, pad_before_s=span.pad_before_s,
                                           pad_after_s=span.pad_after_s)))
    assert len(set(pngs)) == len(pngs)
    return pngs


def _images(pngs: list[bytes], epoch: int):
    return request_images(pngs[epoch - 1] if epoch > 0 else None, pngs[epoch],
                          pngs[epoch + 1] if epoch + 1 < len(pngs) else None)


@pytest.fixture(scope="module")
def runtime(tiny_pack):
    rt = LocalRuntime(tiny_pack, verify_cache=False, n_threads=THREADS)
    yield rt
    rt.close()


# ---------------------------------------------------------------------------- loading

def test_a_corrupted_pack_is_refused_before_anything_is_loaded(tiny_pack, tmp_path):
    pack = copy_pack(tiny_pack, tmp_path)
    lm = pack / "lm.gguf"
    data = bytearray(lm.read_bytes())
    data[0] ^= 0x01          # "GGUF" -> "FGUF": llama.cpp itself would fail differently
    lm.write_bytes(bytes(data))
    with pytest.raises(ModelPackError) as caught:
        LocalRuntime(pack, verify_cache=False)
    message = str(caught.value)
    assert "lm.gguf" in message and "sha256" in message
    assert "\n" not in message


def test_the_runtime_identifies_the_model_by_its_lm_hash(runtime, tiny_pack):
    manifest = verify_pack(tiny_pack, cache=False)
    assert runtime.model_id == manifest.files["lm"].sha256
    assert runtime.system_prompt == manifest.system_prompt()
    assert runtime.n_threads >= 1


# ---------------------------------------------------------------------------- answers

def test_fast_pass_gives_a_grammar_valid_answer(runtime, epoch_pngs):
    for epoch in (0, 2):
        result = runtime.suggest(_images(epoch_pngs, epoch), rationale=False)
        answer = result.answer
        assert result.finish_reason == "stop"            # the grammar closed the object
        obj = json.loads(result.raw)                     # strict JSON
        assert list(obj) == [RULES_KEY, STAGE_KEY]       # coarse variant, training order
        assert answer.stage in SLEEP_STAGES
        assert answer.rationale is None
        assert set(answer.rules) <= set(runtime.rule_ids)
        assert not {"no_json", "truncated"} & set(answer.flags)
        assert (EDGE_FLAG in answer.flags) == (epoch == 0)
        # three 448 x 224 images of 128 visual tokens each, plus the prompt's text
        assert result.prompt_tokens > 3 * 128 + 1000
        assert 0 < result.completion_tokens <= 128
        assert result.seconds > 0


def test_rationale_pass_writes_reasoning_first(runtime, epoch_pngs):
    result = runtime.suggest(_images(epoch_pngs, 2), rationale=True, max_tokens=24)
    assert result.raw.lstrip().startswith("{")
    assert result.raw.index(json.dumps(RATIONALE_KEY)) < 30     # the first key
    assert isinstance(result.answer.rationale, str) and result.answer.rationale
    assert result.completion_tokens <= 24
    assert "no_json" not in result.answer.flags


def test_keeping_the_prompt_cache_changes_no_answer(tiny_pack, runtime, epoch_pngs):
    """LocalRuntime with the KV prefix and image embeddings kept vs evaluating everything."""
    plan = [(1, False), (2, True), (3, False), (2, False), (1, False)]
    with LocalRuntime(tiny_pack, verify_cache=False, keep_prompt_cache=False,
                      n_threads=THREADS) as fresh:
        expected = [fresh.suggest(_images(epoch_pngs, e), rationale=r, max_tokens=20).raw
                    for e, r in plan]
        assert fresh.last_stats.prefix_reused == 0
    got = []
    for i, (e, r) in enumerate(plan):
        got.append(runtime.suggest(_images(epoch_pngs, e), rationale=r, max_tokens=20).raw)
        if i:
            assert runtime.last_stats.prefix_reused > 1000
            assert runtime.last_stats.images_reused >= 2
    assert got == expected


# ---------------------------------------------------------------------------- the handler

def _prompt_logits(llama: Llama, messages, **kw) -> np.ndarray:
    """Logits after the prompt: one greedy token is generated and not evaluated."""
    llama.create_chat_completion(messages=messages, temperature=0.0, repeat_penalty=1.0,
                                 max_tokens=1, **kw)
    pointer = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llama.n_vocab(),)).copy()


def _llama(pack, handler) -> Llama:
    manifest = verify_pack(pack, cache=False)
    return Llama(model_path=str(manifest.lm_path), chat_handler=handler, n_ctx=manifest.context_size,
                 n_threads=THREADS, n_threads_batch=THREADS, flash_attn=True, verbose=False, seed=1)


def test_kept_prefix_and_cached_images_give_bitwise_identical_logits(tiny_pack, epoch_pngs):
    """Against llama-cpp-python's stock MTMDChatHandler, forwards, backwards and after a long
    generation has filled the cache beyond the prompt."""
    manifest = verify_pack(tiny_pack, cache=False)
    prompt = manifest.system_prompt()
    messages = {e: build_messages(prompt, _images(epoch_pngs, e)) for e in range(len(STAGES))}
    other_prompt = build_messages(prompt + "\nBe brief.", _images(epoch_pngs, 2))
    stock = _llama(tiny_pack, MTMDChatHandler(clip_model_path=str(manifest.mmproj_path), verbose=False))
    try:
        reference = {e: _prompt_logits(stock, messages[e]) for e in (0, 1, 2, 4)}
        reference["other"] = _prompt_logits(stock, other_prompt)
    finally:
        stock.close()
    # the images reach the model: each request has its own logits (else this test proves nothing)
    assert not np.array_equal(reference[1], reference[2])
    assert not np.array_equal(reference[0], reference[4])

    handler = PromptKVChatHandler(str(manifest.mmproj_path), keep_prefix=True, image_cache_size=6)
    kept = _llama(tiny_pack, handler)
    try:
        for step, epoch in enumerate((0, 1, 2, 4, 2, 1, 0)):
            if step == 4:   # a long answer between two requests
                kept.create_chat_completion(messages=messages[1], temperature=0.0, max_tokens=40)
            logits = _prompt_logits(kept, messages[epoch])
            assert np.array_equal(logits, reference[epoch]), f"step {step}, epoch {epoch}"
            if step:
                assert handler.last_stats.prefix_reused > 1000
        assert handler.last_stats.images_reused == 3     # epochs 0 and 1 were just seen
        assert handler.last_stats.images_encoded == 0
        # another system prompt (same start): nothing is kept, the answer is still the stock one
        assert np.array_equal(_prompt_logits(kept, other_prompt), reference["other"])
        assert handler.last_stats.prefix_reused == 0
        assert np.array_equal(_prompt_logits(kept, messages[2]), reference[2])
    finally:
        handler.forget()
        kept.close()


def test_checked_greedy_decoding_matches_llama_cpp_python_sampling(tiny_pack, runtime, epoch_pngs):
    """The handler's best-token-first grammar check gives the stock sampler chain's text."""
    manifest = verify_pack(tiny_pack, cache=False)
    stock = _llama(tiny_pack, MTMDChatHandler(clip_model_path=str(manifest.mmproj_path), verbose=False))
    try:
        for epoch, rationale, n in ((2, False, 128), (3, True, 30)):
            grammar = LlamaGrammar.from_string(runtime.grammar_text(rationale=rationale), verbose=False)
            messages = build_messages(runtime.system_prompt, _images(epoch_pngs, epoch))
            want = stock.create_chat_completion(messages=messages, temperature=0.0, repeat_penalty=1.0,
                                                max_tokens=n, grammar=grammar)
            got = runtime.suggest(_images(epoch_pngs, epoch), rationale=rationale, max_tokens=n)
            assert got.raw == want["choices"][0]["message"]["content"]
            assert got.completion_tokens == want["usage"]["completion_tokens"]
    finally:
        stock.close()
