"""The default model's shape: Qwen2.5-VL, sized for a 2-core CPU.

Chosen from the measured table in shared/notes/llama-cpp-vlm.md and our own 2-core runs of
random-weight packs (benchmarks/bench_inference.py; docs/BENCHMARKS.md): a whole night's fast pass
(1,000 epochs, each epoch image encoded once, three images and the labels prefilled, ~15 answer
tokens) must take <= 5 minutes on 2 cores, and the Q4_K_M pack must stay <= 60 MB.
Constraints (same notes): LM rows multiples of 256 so Q4_K applies; a ViT of >= 3 blocks with
equally spaced full-attention blocks; 14-px patches, temporal patch 2, 2x2 merge (a 448 x 224
image is 128 visual tokens); projector output = LM hidden.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelSizes:
    vocab_size: int = 4096
    lm_hidden: int = 512
    lm_layers: int = 6
    lm_heads: int = 8
    lm_kv_heads: int = 2
    lm_intermediate: int = 1536
    vit_hidden: int = 256
    vit_depth: int = 6
    vit_heads: int = 4
    vit_intermediate: int = 1024
    vit_fullatt: tuple[int, ...] = (2, 5)
    # Qwen2.5-VL's 112-px attention windows. llama.cpp's clip code does not take another window
    # size from the GGUF: a model trained with 448-px windows (one window per image, faster to
    # train) answered differently under llama.cpp (found on held-out nights; check_fidelity.py
    # now compares the logits at the stage decision, where this shows).
    vit_window: int = 112
    max_positions: int = 4096

    def to_dict(self) -> dict:
        return asdict(self)


SIZES = {
    "default": ModelSizes(),
    # a few seconds per step on a CPU: the recipe's own smoke test
    "smoke": ModelSizes(vocab_size=1024, lm_hidden=256, lm_layers=2, lm_heads=4, lm_kv_heads=2,
                        lm_intermediate=512, vit_hidden=128, vit_depth=4, vit_heads=2,
                        vit_intermediate=256, vit_fullatt=(1, 3)),
}


def qwen25vl_config(sizes: ModelSizes, specials: dict[str, int]):
    """A ``Qwen2_5_VLConfig`` for ``sizes`` with the token ids of the compact tokenizer."""
    from transformers import Qwen2_5_VLConfig

    head_dim = sizes.lm_hidden // sizes.lm_heads
    half = head_dim // 2                     # rotary pairs, split (temporal, height, width)
    t = half // 4
    mrope = [t, (half - t) // 2, half - t - (half - t) // 2]
    text = dict(
        vocab_size=sizes.vocab_size, hidden_size=sizes.lm_hidden,
        intermediate_size=sizes.lm_intermediate, num_hidden_layers=sizes.lm_layers,
        num_attention_heads=sizes.lm_heads, num_key_value_heads=sizes.lm_kv_heads,
        max_position_embeddings=sizes.max_positions, rms_norm_eps=1e-6, hidden_act="silu",
        tie_word_embeddings=True, bos_token_id=specials["<|endoftext|>"],
        eos_token_id=specials["<|im_end|>"], pad_token_id=specials["<|endoftext|>"],
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
    )
    vision = dict(
        depth=sizes.vit_depth, hidden_size=sizes.vit_hidden, intermediate_size=sizes.vit_intermediate,
        num_heads=sizes.vit_heads, in_channels=3, patch_size=14, spatial_merge_size=2,
        temporal_patch_size=2, window_size=sizes.vit_window, out_hidden_size=sizes.lm_hidden,
        fullatt_block_indexes=list(sizes.vit_fullatt), tokens_per_second=2,
    )
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision,
                           image_token_id=specials["<|image_pad|>"],
                           video_token_id=specials["<|video_pad|>"],
                           vision_start_token_id=specials["<|vision_start|>"],
                           vision_end_token_id=specials["<|vision_end|>"], tie_word_embeddings=True)
    cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    return cfg
