"""A compact byte-level BPE tokenizer with Qwen2's pre-tokenizer and special tokens.

Qwen2's own vocabulary has 151,665 tokens: with a 512-wide language model its embedding alone
would be larger than the whole default pack may be, and the output layer would dominate CPU
decoding. The default model only ever reads the system prompt, three labels and the chat
template, and writes JSON answers in clinical English, so a vocabulary of a few thousand
tokens learnt from exactly that text serves it. The split regex, the byte-level alphabet, NFC
normalisation and the special tokens are Qwen2's, so llama.cpp tokenises it with its ``qwen2``
pre-tokenizer and gets the same ids as Hugging Face (checked after every conversion).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from sleepvlm_ws.core.model.convert import QWEN25VL_CHAT_TEMPLATE

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen2.5-VL's special tokens, in Qwen's order; they take the ids right after the learnt ones.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                  "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
                  "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                  "<|image_pad|>", "<|video_pad|>")

def train_tokenizer(corpus: Iterable[str], out_dir: str | Path, *, vocab_size: int = 4096) -> Path:
    """Learn the BPE merges from ``corpus`` and write a Hugging Face tokenizer to ``out_dir``.

    ``vocab_size`` counts the special tokens too. Deterministic for a given corpus order."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS), min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "add_bos_token": False, "add_prefix_space": False, "bos_token": None,
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 8192, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
        "additional_special_tokens": list(SPECIAL_TOKENS[1:]),
        "chat_template": QWEN25VL_CHAT_TEMPLATE,   # llama.cpp renders it from the GGUF
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return out


def load_tokenizer(path: str | Path):
    """The tokenizer written by :func:`train_tokenizer` (transformers' fast Qwen2 tokenizer)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def special_ids(tokenizer) -> dict[str, int]:
    """Special token -> id."""
    return {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
