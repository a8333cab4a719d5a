"""Child process: run llama.cpp's ``convert_hf_to_gguf.py`` and let it accept one more tokenizer.

``python -m sleepvlm_ws.core.model.gguf_convert_child CONVERTER_SCRIPT ARGS...`` behaves exactly like
``python CONVERTER_SCRIPT ARGS...`` with one difference: a byte-level BPE tokenizer the converter
does not know by hash (it identifies pre-tokenizers by hashing the ids of a test string, so every
newly trained vocabulary is "unknown") is accepted as llama.cpp's ``qwen2`` pre-tokenizer when its
``tokenizer.json`` splits with exactly Qwen2's regex and maps bytes with ByteLevel. The workstation's
default model uses such a compact vocabulary (models/training/recipe/tokenizer.py). Any other
unknown tokenizer still fails as before. The converter's own code is not changed on disk.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def splits_like_qwen2(model_dir: Path) -> bool:
    """True when ``model_dir/tokenizer.json`` is a byte-level BPE with Qwen2's split regex."""
    try:
        tok = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    if (tok.get("model") or {}).get("type") != "BPE" or not steps or len(steps) != 2:
        return False
    split, byte_level = steps
    return (split.get("type") == "Split" and (split.get("pattern") or {}).get("Regex") == QWEN2_SPLIT
            and split.get("behavior") == "Isolated" and not split.get("invert")
            and byte_level.get("type") == "ByteLevel" and not byte_level.get("use_regex", True))


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m sleepvlm_ws.core.model.gguf_convert_child CONVERTER_SCRIPT ARGS...")
    script = Path(argv[0]).resolve()
    sys.argv = [str(script), *argv[1:]]
    sys.path.insert(0, str(script.parent))
    sys.path.insert(1, str(script.parent / "gguf-py"))
    from conversion import base  # late: the converter's package, importable once its folder is on sys.path

    original = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if splits_like_qwen2(self.dir_model):
                return "qwen2"
            raise

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
