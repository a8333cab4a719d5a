"""Checkpoint -> model pack conversion, on a real (tiny, random-weight) Qwen2.5-VL checkpoint.

The session fixture ``tiny_pack`` (conftest.py) runs the whole path once: llama.cpp's converter
fetched from the llama-cpp-python sdist, LM and projector to GGUF, Q4_K_M quantisation, manifest.
Here the pack is verified, loaded in llama.cpp and asked a real three-image SleepVLM request.
"""

from __future__ import annotations

import base64
import ctypes
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from packs import QWEN3_ONLY_TOKENS
from PIL import Image

from sleepvlm_ws.core.model.convert import convert_checkpoint, default_prompt_file, inspect_checkpoint
from sleepvlm_ws.core.model.llama_converter import ensure_converter
from sleepvlm_ws.core.model.model_pack import verify_pack
from sleepvlm_ws.errors import InputError, ModelPackError

LABELS = ("Preceding epoch N\u2011" + "1: ", "**Target epoch N**: ", "Subsequent epoch N+1: ")
TOKENS_PER_IMAGE = 128  # 448 x 224 px, 14-px patches merged 2 x 2 -> 16 x 8
IMAGE_POSITIONS = 16  # M-RoPE: an image advances the position by max(16, 8)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def png(seed: int) -> bytes:
    pixels = (np.random.default_rng(seed).random((224, 448, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def sleepvlm_messages(system: str, images: list[bytes] | None) -> list[dict]:
    content: list[dict] = []
    for i, label in enumerate(LABELS):
        content.append({"type": "text", "text": label})
        if images is not None:
            content.append({"type": "image_url", "image_url": {"url": data_uri(images[i])}})
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


@pytest.fixture(scope="module")
def llm(tiny_pack):
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    m = verify_pack(tiny_pack, cache=False)
    model = Llama(model_path=str(m.lm_path), chat_handler=MTMDChatHandler(clip_model_path=str(m.mmproj_path)),
                  n_ctx=m.context_size, n_threads=2, verbose=False, seed=0)
    yield model
    model.close()


# -- the pack --------------------------------------------------------------------------------
def test_tiny_pack_is_complete_and_verifies(tiny_pack):
    m = verify_pack(tiny_pack, cache=False)
    assert m.name == "tiny-qwen25vl-test" and m.version == "0.0.1"
    assert m.quantisation == "Q4_K_M" and m.context_size == 4096
    assert m.licence == "Apache-2.0 (random test weights)"
    assert m.created_by.startswith("sleepvlm-ws ") and "llama-cpp-python" in m.created_by
    assert m.prompt_path.read_bytes() == default_prompt_file().read_bytes()
    card = m.model_card_path.read_text(encoding="utf-8")
    assert "Qwen2_5_VLForConditionalGeneration" in card and "Q4_K_M" in card
    for f in (m.lm_path, m.mmproj_path):
        assert f.read_bytes()[:4] == b"GGUF"
    assert sorted(p.name for p in tiny_pack.iterdir()) == [
        "MODEL_CARD.md", "lm.gguf", "manifest.json", "mmproj.gguf", "system-prompt.txt"]


def test_language_model_is_q4_k_m_with_the_training_template(llm):
    meta = llm.metadata
    assert meta["general.architecture"] == "qwen2vl"
    assert int(meta["general.file_type"]) == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert meta["tokenizer.ggml.pre"] == "qwen2"
    assert "<|vision_start|><|image_pad|><|vision_end|>" in meta["tokenizer.chat_template"]
    assert "<|im_start|>assistant\n" in meta["tokenizer.chat_template"]


def _first_step_logits(llm, messages, **kw):
    seen: list[np.ndarray] = []

    def capture(_ids, scores):
        if not seen:
            seen.append(np.array(scores, dtype=np.float32))
        return scores

    out = llm.create_chat_completion(messages=messages, max_tokens=12, temperature=0.0, top_p=0.8,
                                     logits_processor=[capture], **kw)
    return out, seen[0]


def test_three_image_request_is_answered(llm, tiny_pack):
    system = (tiny_pack / "system-prompt.txt").read_text(encoding="utf-8")
    images = [png(1), png(2), png(3)]
    out = llm.create_chat_completion(messages=sleepvlm_messages(system, images), max_tokens=12,
                                     temperature=0.0, top_p=0.8)
    text = out["choices"][0]["message"]["content"]
    assert isinstance(text, str) and out["usage"]["completion_tokens"] > 0
    assert out["usage"]["prompt_tokens"] > 1000  # the pack's whole system prompt went in


def test_the_images_reach_the_language_model(llm):
    system = "Score the target epoch."  # short: these requests only compare images
    images = [png(1), png(2), png(3)]
    out, logits = _first_step_logits(llm, sleepvlm_messages(system, images))
    # the prompt grew by at least the images' M-RoPE positions ...
    text_only, _ = _first_step_logits(llm, sleepvlm_messages(system, None))
    grown = out["usage"]["prompt_tokens"] - text_only["usage"]["prompt_tokens"]
    assert grown >= 3 * IMAGE_POSITIONS
    # ... and the model saw them: another target image changes what it predicts, the same does not
    _, other = _first_step_logits(llm, sleepvlm_messages(system, [png(1), png(99), png(3)]))
    assert not np.allclose(logits, other, atol=1e-4)
    _, same = _first_step_logits(llm, sleepvlm_messages(system, images))
    np.testing.assert_allclose(logits, same, atol=1e-3)


def test_an_epoch_image_is_128_visual_tokens(llm):
    handler = llm.chat_handler
    handler._init_mtmd_context(llm)
    mt = handler._mtmd_cpp
    bitmap = handler._create_bitmap_from_bytes(png(5))
    chunks = mt.mtmd_input_chunks_init()
    try:
        marker = mt.mtmd_default_marker()
        text = mt.mtmd_input_text()
        text.text, text.text_len, text.add_special, text.parse_special = marker, len(marker), False, True
        bitmaps = (mt.mtmd_bitmap_p_ctypes * 1)(bitmap)
        assert mt.mtmd_tokenize(handler.mtmd_ctx, chunks, ctypes.byref(text), bitmaps, 1) == 0
        kinds = []
        for i in range(mt.mtmd_input_chunks_size(chunks)):
            chunk = mt.mtmd_input_chunks_get(chunks, i)
            kinds.append((mt.mtmd_input_chunk_get_type(chunk), mt.mtmd_input_chunk_get_n_tokens(chunk),
                          mt.mtmd_input_chunk_get_n_pos(chunk)))
    finally:
        mt.mtmd_input_chunks_free(chunks)
        mt.mtmd_bitmap_free(bitmap)
    image = [k for k in kinds if k[0] == mt.MTMD_INPUT_CHUNK_TYPE_IMAGE]
    assert image == [(mt.MTMD_INPUT_CHUNK_TYPE_IMAGE, TOKENS_PER_IMAGE, IMAGE_POSITIONS)]


def test_transformers_and_llama_cpp_tokenise_alike(tiny_hf_checkpoint, tiny_pack):
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_hf_checkpoint), local_files_only=True)
    assert not any(t in hf.get_vocab() for t in QWEN3_ONLY_TOKENS)
    vocab = Llama(model_path=str(tiny_pack / "lm.gguf"), vocab_only=True, verbose=False)
    try:
        samples = [
            *LABELS,
            '{"reasoning_text": "Spindles at 12-14 s on C4-M1; K complex.", '
            '"applicable_rules": ["N2.1", "N2.2"], "sleep_stage": "N2"}',
            "<|im_start|>system\nYou score sleep.<|im_end|>\n<|im_start|>assistant\n",
            "  multiple   spaces\n\n\ttabs and 1234567 numbers; don't we'll I'M",
            "Schlafstadien: N1 \u2192 N2, 75 \u00b5V, na\u00efve caf\u00e9",
            "\u7761\u7720\u5206\u671f N3 \U0001F634",
        ]
        for s in samples:
            ids_hf = hf.encode(s, add_special_tokens=False)
            ids_cpp = vocab.tokenize(s.encode("utf-8"), add_bos=False, special=True)
            assert ids_cpp == ids_hf, s
            assert vocab.detokenize(ids_cpp, special=True).decode("utf-8") == s
    finally:
        vocab.close()


# -- refusing what cannot be converted ---------------------------------------------------------
def _small_copy(src: Path, dest: Path) -> Path:
    """The checkpoint's small files copied, the weights as a symlink (cheap variants)."""
    dest.mkdir()
    for item in src.iterdir():
        if item.suffix == ".safetensors":
            (dest / item.name).symlink_to(item)
        else:
            shutil.copy(item, dest / item.name)
    return dest


def _edit_config(hf: Path, change) -> None:
    cfg = json.loads((hf / "config.json").read_text(encoding="utf-8"))
    change(cfg)
    (hf / "config.json").write_text(json.dumps(cfg), encoding="utf-8")


@pytest.mark.parametrize("variant, needle", [
    ("no-config", "no config.json"),
    ("lora", "is a LoRA adapter"),
    ("llama", "not a Qwen2.5-VL checkpoint (model_type 'llama')"),
    ("auto-round", "is a auto-round quantised checkpoint"),
    ("no-weights", "no model weights"),
    ("no-preprocessor", "no preprocessor_config.json"),
    ("no-tokenizer", "no tokenizer files"),
])
def test_unconvertible_checkpoints_are_refused_in_one_line(tiny_hf_checkpoint, tmp_path, variant, needle):
    hf = _small_copy(tiny_hf_checkpoint, tmp_path / variant)
    if variant in ("no-config", "lora"):
        (hf / "config.json").unlink()
        if variant == "lora":
            (hf / "adapter_config.json").write_text('{"r": 16}', encoding="utf-8")
    elif variant == "llama":
        _edit_config(hf, lambda c: c.update(model_type="llama", architectures=["LlamaForCausalLM"]))
    elif variant == "auto-round":
        _edit_config(hf, lambda c: c.update(quantization_config={"quant_method": "auto-round", "bits": 4}))
    elif variant == "no-weights":
        (hf / "model.safetensors").unlink()
    elif variant == "no-preprocessor":
        (hf / "preprocessor_config.json").unlink()
    elif variant == "no-tokenizer":
        (hf / "tokenizer.json").unlink()
    out = tmp_path / "pack"
    with pytest.raises(InputError) as exc:
        convert_checkpoint(hf, out, name="x")
    assert "\n" not in str(exc.value) and needle in str(exc.value), str(exc.value)
    assert not out.exists()


def test_bad_arguments_are_refused(tiny_hf_checkpoint, tmp_path):
    with pytest.raises(ModelPackError, match="unknown quantisation 'Q3_XL'"):
        convert_checkpoint(tiny_hf_checkpoint, tmp_path / "p", name="x", quant="Q3_XL")
    with pytest.raises(ModelPackError, match="prompt"):
        convert_checkpoint(tiny_hf_checkpoint, tmp_path / "p", name="x", prompt_file=tmp_path / "none.txt")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ModelPackError, match="already exists and is not empty"):
        convert_checkpoint(tiny_hf_checkpoint, busy, name="x")
    assert (busy / "keep.txt").read_text(encoding="utf-8") == "mine"
    with pytest.raises(ModelPackError, match="checkpoint folder not found"):
        convert_checkpoint(tmp_path / "nowhere", tmp_path / "p", name="x")
    assert inspect_checkpoint(tiny_hf_checkpoint)["model_type"] == "qwen2_5_vl"


def test_converter_failure_is_one_line_and_leaves_nothing(tiny_hf_checkpoint, tiny_converter_dir, tmp_path):
    hf = _small_copy(tiny_hf_checkpoint, tmp_path / "hf")
    (hf / "model.safetensors").unlink()
    (hf / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}   " + bytes(64))
    out = tmp_path / "packs" / "broken"
    with pytest.raises(ModelPackError) as exc:
        convert_checkpoint(hf, out, name="broken", converter_source=tiny_converter_dir)
    text = str(exc.value)
    assert "\n" not in text and text.startswith(f"{hf}: language model conversion failed: "), text
    assert "(log: " in text
    log = Path(text.rsplit("(log: ", 1)[1].rstrip(")"))
    assert log.is_file() and "convert_hf_to_gguf.py" in log.read_text(encoding="utf-8")
    assert not out.exists() and list((tmp_path / "packs").iterdir()) == []


def test_cancelled_conversion_leaves_nothing(tiny_hf_checkpoint, tiny_converter_dir, tmp_path):
    import threading

    stop = threading.Event()
    stop.set()  # the technologist pressed Cancel: the converter child is stopped at once
    out = tmp_path / "packs" / "cancelled"
    with pytest.raises(ModelPackError) as exc:
        convert_checkpoint(tiny_hf_checkpoint, out, name="cancelled", cancel=stop,
                           converter_source=tiny_converter_dir)
    assert str(exc.value) == f"{tiny_hf_checkpoint}: language model conversion cancelled"
    assert list((tmp_path / "packs").iterdir()) == []


def test_checkpoint_from_a_newer_transformers_is_refused(tiny_hf_checkpoint, tmp_path):
    hf = _small_copy(tiny_hf_checkpoint, tmp_path / "hf")
    _edit_config(hf, lambda c: c.update(transformers_version="99.0.0"))
    with pytest.raises(ModelPackError, match="was saved by transformers 99.0.0; converting it needs"):
        convert_checkpoint(hf, tmp_path / "pack", name="x", converter_source=tmp_path / "unused")


def test_converter_is_unpacked_from_an_sdist_and_nothing_else(tmp_path, monkeypatch):
    import tarfile

    root = "llama_cpp_python-0.3.36/vendor/llama.cpp"
    files = {f"{root}/convert_hf_to_gguf.py": b"print('convert')\n",
             f"{root}/conversion/__init__.py": b"",
             f"{root}/gguf-py/gguf/__init__.py": b"",
             f"{root}/tools/server/server.cpp": b"int main(){}",
             "llama_cpp_python-0.3.36/llama_cpp/llama.py": b"",
             f"{root}/../../../../evil.py": b"boom"}
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{root}/conversion/passwd.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    monkeypatch.setenv("SLEEPVLM_WS_LLAMA_CPP_SRC", str(sdist))
    got = ensure_converter(cache_dir=tmp_path / "cache")
    assert got.parent == tmp_path / "cache"
    kept = sorted(str(p.relative_to(got)) for p in got.rglob("*") if p.is_file())
    assert kept == ["SOURCE.json", "conversion/__init__.py", "convert_hf_to_gguf.py",
                    "gguf-py/gguf/__init__.py"]
    assert not list(tmp_path.rglob("evil.py"))
    assert ensure_converter(cache_dir=tmp_path / "cache") == got  # unpacked once
    monkeypatch.setenv("SLEEPVLM_WS_LLAMA_CPP_SRC", str(tmp_path / "nothing.tar.gz"))
    with pytest.raises(ModelPackError, match="nor a llama-cpp-python source archive"):
        ensure_converter(cache_dir=tmp_path / "cache")
