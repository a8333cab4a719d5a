"""Convert a Hugging Face Qwen2.5-VL checkpoint (such as the released SleepVLM-3B) into a model pack.

Steps: check the checkpoint folder; make a working copy of its small files (weights are linked,
the user's folder is never written); add the top-level ``architectures`` that transformers 4.57
leaves out; run llama.cpp's converter twice in a child process (language model as f16 GGUF, then
the vision projector with ``--mmproj``, kept f16); quantise the language model with
``llama_cpp.llama_model_quantize`` (in a child process too: a crash there must not take the GUI
with it); copy the prompt file; hash everything into ``manifest.json`` and write a stub model card.
The pack is assembled in a hidden staging folder beside ``out_dir`` and renamed into place at the
end, so a failed or cancelled conversion leaves nothing half-made.

Run as ``python -m sleepvlm_ws.core.model.convert quantize SRC DST QUANT`` it is the quantiser child.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import re
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path

from ... import __version__
from ...errors import ModelPackError
from ...paths import resources_dir, user_data_dir
from .llama_converter import (CONVERTER_SCRIPT, converter_env, ensure_converter, installed_llama_cpp_version,
                              run_logged)
from .model_pack import MANIFEST_NAME, PackManifest, describe_file, write_manifest

QWEN25VL_ARCH = "Qwen2_5_VLForConditionalGeneration"
DEFAULT_PROMPT = Path("prompts") / "sleepvlm-ws-system-prompt.txt"
# Quantisations offered for the language model (K-quants need rows that are multiples of 256).
# The Qwen2.5-VL chat template (system prompt, then user/assistant turns; images and videos become
# the vision placeholders the processor expands).
QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


QUANT_FTYPES = {
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "Q4_K_S": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "Q5_K_S": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K", "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "F16": None,
}
DEFAULT_CONTEXT = 8192  # ~2,500-token prompt + 3 x 128 image tokens + up to 1,024 answer tokens
LM_FILE, MMPROJ_FILE, CARD_FILE = "lm.gguf", "mmproj.gguf", "MODEL_CARD.md"
_CONVERTER_NEEDS = ("torch", "transformers", "numpy", "yaml", "sentencepiece", "safetensors")


def default_prompt_file() -> Path:
    """The workstation's own default system prompt (for packs that bring none of their own)."""
    return resources_dir() / DEFAULT_PROMPT


def pack_folder_name(name: str) -> str:
    """A folder name for a pack called ``name``.

    Parameters
    ----------
    name : str
        The pack's name as the user gave it.

    Returns
    -------
    str
        ``name`` stripped, each run of characters other than ASCII letters, digits, ``.``, ``_``
        and ``-`` replaced by one ``-``, leading and trailing ``-`` and ``.`` removed;
        ``"model-pack"`` when nothing is left.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    return slug or "model-pack"


# -- checking the checkpoint ---------------------------------------------------------------
def inspect_checkpoint(hf_dir: str | Path) -> dict:
    """Read and check a checkpoint folder's config.json; ModelPackError if it cannot be converted."""
    hf = Path(hf_dir)
    if not hf.is_dir():
        raise ModelPackError(hf, "checkpoint folder not found")
    cfg_path = hf / "config.json"
    if not cfg_path.is_file():
        if (hf / "adapter_config.json").is_file():
            raise ModelPackError(hf, "is a LoRA adapter, not a full checkpoint; merge it into "
                                     "Qwen2.5-VL-3B-Instruct first")
        raise ModelPackError(hf, "no config.json: not a Hugging Face checkpoint folder")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelPackError(cfg_path, f"cannot read the checkpoint config: {exc}") from None
    if not isinstance(cfg, dict):
        raise ModelPackError(cfg_path, "the checkpoint config is not a JSON object")
    model_type = cfg.get("model_type")
    archs = cfg.get("architectures") or []
    if model_type != "qwen2_5_vl" and QWEN25VL_ARCH not in archs:
        raise ModelPackError(hf, f"not a Qwen2.5-VL checkpoint (model_type {model_type!r}); "
                                 "SleepVLM packs are made from Qwen2.5-VL models")
    quant = cfg.get("quantization_config")
    if isinstance(quant, dict) or (isinstance(cfg.get("text_config"), dict)
                                   and isinstance(cfg["text_config"].get("quantization_config"), dict)):
        method = (quant or cfg["text_config"]["quantization_config"]).get("quant_method", "quantised")
        raise ModelPackError(hf, f"is a {method} quantised checkpoint, which llama.cpp cannot convert; "
                                 "convert the BF16 weights instead")
    if not (list(hf.glob("*.safetensors")) or list(hf.glob("pytorch_model*.bin"))):
        raise ModelPackError(hf, "no model weights (*.safetensors) in the checkpoint folder")
    if not ((hf / "tokenizer.json").is_file() or
            ((hf / "vocab.json").is_file() and (hf / "merges.txt").is_file())):
        raise ModelPackError(hf, "no tokenizer files (tokenizer.json) in the checkpoint folder")
    if not (hf / "preprocessor_config.json").is_file():
        raise ModelPackError(hf, "no preprocessor_config.json: the vision projector cannot be converted "
                                 "without the image processor settings")
    vision = cfg.get("vision_config") or {}
    if vision.get("temporal_patch_size", 2) != 2:
        raise ModelPackError(cfg_path, "the vision encoder's temporal_patch_size must be 2 for llama.cpp")
    return cfg


def _check_converter_deps(hf: Path, cfg: dict) -> None:
    missing = [m for m in _CONVERTER_NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        names = {"yaml": "pyyaml"}
        raise ModelPackError(None, "converting needs Python packages that are not installed: "
                                   + ", ".join(names.get(m, m) for m in missing)
                                   + " (pip install 'sleepvlm-ws[convert]')")

    saved, have = str(cfg.get("transformers_version") or ""), version("transformers")
    if saved.split(".")[0].isdigit() and int(saved.split(".")[0]) > int(have.split(".")[0]):
        raise ModelPackError(hf, f"was saved by transformers {saved}; converting it needs transformers "
                                 f"{saved.split('.')[0]}.x or newer (installed: {have})")


def _link_or_copy(src: Path, dst: Path) -> None:
    for make in (os.symlink, os.link):
        try:
            make(src.resolve(), dst)
            return
        except (OSError, NotImplementedError):
            continue
    shutil.copy2(src, dst)


def _working_copy(hf: Path, dest: Path, cfg: dict) -> None:
    """Small files copied, weights linked; config.json gets ``architectures`` if it lacks it."""
    dest.mkdir(parents=True)
    for item in hf.iterdir():
        if item.name.startswith(".") or item.is_dir():
            continue
        if item.suffix in (".safetensors", ".bin", ".pt", ".pth") or item.stat().st_size > 64 * 2**20:
            _link_or_copy(item, dest / item.name)
        else:
            shutil.copy2(item, dest / item.name)
    if not cfg.get("architectures"):
        patched = dict(cfg, architectures=[QWEN25VL_ARCH])
        (dest / "config.json").write_text(json.dumps(patched, indent=2), encoding="utf-8")


def _licence_from_readme(hf: Path) -> str | None:
    """``license:`` from the checkpoint README's front matter (Hugging Face model cards have it)."""
    try:
        text = (hf / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = re.match(r"---\s*\n(.*?)\n---", text, re.S)
    if not m:
        return None
    lic = re.search(r"^licen[cs]e:\s*(.+?)\s*$", m.group(1), re.M)
    return lic.group(1).strip("'\"") if lic else None


def _model_card(*, name: str, version: str, hf: Path, cfg: dict, quant: str, licence: str,
                prompt_src: Path, llama_version: str) -> str:
    text = cfg.get("text_config") or cfg
    vision = cfg.get("vision_config") or {}
    weights = sorted(p.name for p in hf.glob("*.safetensors"))
    lines = [
        f"# {name} {version}",
        "",
        "A SleepVLM Workstation model pack (format sleepvlm-pack 1). Stub card written by the converter:",
        "replace it with what the model is, how it was trained and how it was validated.",
        "",
        "## Source checkpoint",
        f"- folder: `{hf.name}` ({', '.join(weights) or 'weights'})",
        f"- architecture: {QWEN25VL_ARCH} (model_type {cfg.get('model_type')})",
        f"- language model: hidden {text.get('hidden_size')}, {text.get('num_hidden_layers')} layers, "
        f"vocabulary {text.get('vocab_size')}",
        f"- vision encoder: hidden {vision.get('hidden_size')}, depth {vision.get('depth')}, "
        f"patch {vision.get('patch_size')}, merge {vision.get('spatial_merge_size')}",
        "",
        "## Conversion",
        f"- language model: GGUF {quant}; vision projector: GGUF f16",
        f"- converter: llama.cpp convert_hf_to_gguf.py from llama-cpp-python {llama_version}",
        f"- made by: sleepvlm-ws {__version__} on {time.strftime('%Y-%m-%d')}",
        f"- system prompt: `{prompt_src.name}`",
        "",
        "## Licence",
        licence,
        "",
    ]
    return "\n".join(lines)


# -- the conversion ------------------------------------------------------------------------
def convert_checkpoint(hf_dir: str | Path, out_dir: str | Path, *, name: str,
                       quant: str = "Q4_K_M", prompt_file: str | Path | None = None,
                       licence: str | None = None, version: str = "1",
                       context_size: int | None = None, progress=None, cancel=None,
                       converter_cache: str | Path | None = None,
                       converter_source: str | Path | None = None,
                       renderer_version: str | None = None) -> Path:
    """Convert a Qwen2.5-VL checkpoint folder into a model pack at ``out_dir``.

    The checkpoint folder is never written. The pack is assembled in a hidden staging folder
    beside ``out_dir`` and renamed into place at the end, so a failed or cancelled conversion
    leaves nothing half-made. The converter children's output goes to a log in the user data
    folder's ``logs/`` (kept).

    Parameters
    ----------
    hf_dir : str or Path
        The Hugging Face checkpoint folder (``config.json``, weights, tokenizer files and
        ``preprocessor_config.json``): full BF16/F16 weights, not quantised, not a LoRA adapter.
    out_dir : str or Path
        Where the pack goes: a folder that does not exist yet, or an empty one.
    name : str
        The pack's name (required, not blank).
    quant : str
        The language model's quantisation, one of ``QUANT_FTYPES`` (case-insensitive; default
        ``"Q4_K_M"``; ``"F16"`` leaves it unquantised). The vision projector always stays f16.
    prompt_file : str or Path, optional
        The system prompt the model was trained with, UTF-8 text (default: the workstation's own,
        ``resources/prompts/``).
    licence : str, optional
        The weights' licence (default: ``license:`` in the checkpoint README's front matter, else
        "unspecified (see the source checkpoint)").
    version : str
        The pack's version (default ``"1"``).
    context_size : int, optional
        The context size the manifest declares, in tokens, at least 512 (default: 8192, or the
        model's ``max_position_embeddings`` when smaller).
    progress : callable, optional
        ``progress(message)`` gets one line per step.
    cancel : object, optional
        Anything with ``is_set()`` (a ``threading.Event``); once set, the running child is
        stopped and the conversion ends with ModelPackError.
    converter_cache : str or Path, optional
        Where llama.cpp's converter is kept once fetched (default: ``converter/`` in the user data
        folder).
    converter_source : str or Path, optional
        A llama.cpp source folder or a llama-cpp-python sdist to take the converter from (default:
        ``$SLEEPVLM_WS_LLAMA_CPP_SRC``, else the sdist is fetched with pip, once per version).
    renderer_version : str, optional
        The pixels the model was trained on (default: the workstation's,
        ``model_pack.RENDERER_VERSION``; the v2 training recipe renders ``svlm-render-2``). Not
        checked here: ``verify_pack`` refuses a pack that declares a renderer it does not know.

    Returns
    -------
    Path
        ``out_dir`` (``~`` expanded), holding ``lm.gguf``, ``mmproj.gguf``, the prompt file, a stub
        ``MODEL_CARD.md`` and ``manifest.json``.

    Raises
    ------
    ModelPackError
        One line, for bad input (a checkpoint that cannot be converted, ``out_dir`` not empty, an
        unknown quantisation, an unreadable or empty prompt file, converter packages missing) and
        for a converter failure or a cancellation.
    """
    say = progress or (lambda _m: None)
    hf = Path(hf_dir).expanduser()
    out = Path(out_dir).expanduser()
    if not name or not name.strip():
        raise ModelPackError(None, "a model pack needs a name")
    quant = quant.upper()
    if quant not in QUANT_FTYPES:
        raise ModelPackError(None, f"unknown quantisation {quant!r}; choose one of {', '.join(QUANT_FTYPES)}")
    cfg = inspect_checkpoint(hf)
    prompt_src = Path(prompt_file).expanduser() if prompt_file is not None else default_prompt_file()
    try:
        prompt_text = prompt_src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelPackError(prompt_src, f"cannot read the prompt file as UTF-8 text: {exc}") from None
    if not prompt_text.strip():
        raise ModelPackError(prompt_src, "the prompt file is empty")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelPackError(out, "output folder already exists and is not empty")
    licence = licence or _licence_from_readme(hf) or "unspecified (see the source checkpoint)"
    text_cfg = cfg.get("text_config") or cfg
    if context_size is None:
        context_size = min(DEFAULT_CONTEXT, int(text_cfg.get("max_position_embeddings") or DEFAULT_CONTEXT))
    if int(context_size) < 512:
        raise ModelPackError(None, f"context size {context_size} is too small for a SleepVLM request")
    _check_converter_deps(hf, cfg)
    llama_version = installed_llama_cpp_version()
    converter = ensure_converter(cache_dir=converter_cache, source=converter_source, progress=say)

    staging = out.parent / f".{out.name}.converting-{os.getpid()}"
    pack, work = staging / "pack", staging / "work"
    log = _log_path(name)
    try:
        if staging.exists():
            shutil.rmtree(staging)
        pack.mkdir(parents=True)
        _working_copy(hf, work / "hf", cfg)
        script = str(converter / CONVERTER_SCRIPT)
        env = converter_env()
        lm_f16 = work / "lm-f16.gguf"
        say("Converting the language model to GGUF (f16)")
        run_logged([sys.executable, "-m", "sleepvlm_ws.core.model.gguf_convert_child", script, str(work / "hf"),
                    "--outtype", "f16", "--outfile", str(lm_f16),
                    "--model-name", name.strip()],
                   log, cwd=converter, env=env, cancel=cancel, what="language model conversion",
                   subject=hf)
        say("Converting the vision projector to GGUF (f16)")
        run_logged([sys.executable, script, str(work / "hf"), "--mmproj", "--outtype", "f16",
                    "--outfile", str(pack / MMPROJ_FILE), "--model-name", name.strip()],
                   log, cwd=converter, env=env, cancel=cancel, what="vision projector conversion",
                   subject=hf)
        if QUANT_FTYPES[quant] is None:
            os.replace(lm_f16, pack / LM_FILE)
        else:
            say(f"Quantising the language model to {quant}")
            run_logged([sys.executable, "-m", "sleepvlm_ws.core.model.convert", "quantize", str(lm_f16),
                        str(pack / LM_FILE), quant], log, env=env, cancel=cancel,
                       what="quantisation", subject=hf)
        for produced in (pack / LM_FILE, pack / MMPROJ_FILE):
            if not produced.is_file() or produced.stat().st_size == 0:
                raise ModelPackError(produced, f"the converter wrote no output (log: {log})")
        shutil.rmtree(work, ignore_errors=True)

        prompt_rel = "system-prompt" + (prompt_src.suffix or ".txt")
        shutil.copyfile(prompt_src, pack / prompt_rel)
        (pack / CARD_FILE).write_text(_model_card(
            name=name.strip(), version=version, hf=hf, cfg=cfg, quant=quant, licence=licence,
            prompt_src=prompt_src, llama_version=llama_version), encoding="utf-8")
        say("Hashing the pack's files")
        manifest = PackManifest(
            name=name.strip(), version=str(version),
            files={"lm": describe_file(pack, LM_FILE), "mmproj": describe_file(pack, MMPROJ_FILE)},
            quantisation=quant, prompt_file=describe_file(pack, prompt_rel),
            context_size=int(context_size), licence=licence, model_card=CARD_FILE,
            created_by=f"sleepvlm-ws {__version__} convert (llama-cpp-python {llama_version})",
            **({"renderer_version": renderer_version} if renderer_version else {}),
        )
        write_manifest(manifest, pack)
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(pack, out)
    except OSError as exc:
        raise ModelPackError(getattr(exc, "filename", None) or out,
                             f"cannot write the model pack: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"Model pack written: {out}")
    assert (out / MANIFEST_NAME).is_file()
    return out


def _log_path(name: str) -> Path:
    """Where the converter children's output goes: the user data folder's logs/ (kept)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return user_data_dir() / "logs" / f"convert-{pack_folder_name(name)}-{stamp}.log"


# -- the quantiser child -------------------------------------------------------------------
def quantize_gguf(src: Path, dst: Path, quant: str) -> None:
    """Quantise a GGUF language model in this process (the child of :func:`convert_checkpoint`)."""
    import llama_cpp  # late: llama.cpp loads only in the quantiser child

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_FTYPES[quant])
    params.nthread = 0
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize returned {rc}")


def _main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "quantize" and argv[3] in QUANT_FTYPES and QUANT_FTYPES[argv[3]]:
        quantize_gguf(Path(argv[1]), Path(argv[2]), argv[3])
        return 0
    print("usage: python -m sleepvlm_ws.core.model.convert quantize SRC.gguf DST.gguf QUANT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
