"""The default model's training recipe, end to end at smoke size on this machine's CPU.

One entry point (models/training/train_default.py) generates nights, trains the compact tokenizer,
runs both phases (paused and resumed), exports the Hugging Face checkpoint, converts it to GGUF
packs through the workstation's converter, and check_fidelity.py shows llama.cpp sees what
training saw (pixels, token chunks, logits at the stage decision). Also: the compact Qwen2-split
tokenizer gets the same ids from Hugging Face and from llama.cpp.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "models" / "training"
SMOKE = ["--nights", "2", "--night-hours", "0.25", "--sizes", "smoke", "--workers", "1",
         "--phase1-seconds", "1", "--phase2-seconds", "1", "--phase1-batch", "4",
         "--phase2-batch", "2", "--validation-epochs", "8", "--device", "cpu",
         # v1: the pixels this workstation renders (a v2 pack declares svlm-render-2 and is
         # refused until the workstation switches renderer with it; its data: test_acquisition)
         "--recipe", "v1"]

pytest.importorskip("torch")
pytest.importorskip("transformers")


_ENV: dict[str, str] = {}


def _run(*args, cwd=ROOT, check=True):
    import os

    env = {**os.environ, **_ENV, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=1200, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[:2]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory, tiny_converter_dir):
    _ENV["SLEEPVLM_WS_LLAMA_CPP_SRC"] = str(tiny_converter_dir)   # fetched once per test session
    work = tmp_path_factory.mktemp("recipe") / "work"
    pack = work.parent / "pack"
    entry = TRAINING / "train_default.py"
    _run(entry, "data", "--work", work, *SMOKE)
    paused = _run(entry, "train", "--work", work, *SMOKE, "--stop-after", "0", check=False)
    _run(entry, "all", "--work", work, *SMOKE, "--pack-out", pack)
    return work, pack, paused


def test_one_entry_point_writes_a_pack_and_resumes(recipe_run):
    from sleepvlm_ws.core.model.model_pack import verify_pack

    work, pack, paused = recipe_run
    assert paused.returncode == 3 and "paused" in paused.stdout
    log = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    events = [(r.get("phase"), r.get("event")) for r in log]
    assert (1, "paused") in events and (1, "done") in events and (2, "done") in events
    done1 = next(r for r in log if r.get("phase") == 1 and r.get("event") == "done")
    assert done1["step"] >= 40            # the schedule's minimum: the resumed run went on
    split = json.loads((work / "split.json").read_text())
    assert split["val"] and not set(split["val"]) & set(split["train"])
    manifest = verify_pack(pack)
    assert manifest.quantisation == "Q4_K_M"
    assert (pack / "system-prompt.txt").read_bytes() == (TRAINING / "default-system-prompt.txt").read_bytes()
    hf = work / "hf"
    assert all(p.stat().st_size < 16 * 2**20 for p in hf.glob("*.safetensors"))
    assert json.loads((hf / "config.json").read_text())["vision_config"]["window_size"] == 112


def test_llama_cpp_sees_what_training_saw(recipe_run):
    work, _pack, _ = recipe_run
    out = work.parent / "fidelity.json"
    _run(TRAINING / "check_fidelity.py", work / "hf", work / "pack-f16", "--json", out)
    report = json.loads(out.read_text())
    assert report["pass"] and report["text_chunks_equal"] and report["pixels_max_abs_diff"] == 0.0
    assert min(report["decision_logit_cosine"]) >= 0.9999 and all(report["decision_top1_equal"])


def test_compact_tokenizer_same_ids_in_llama_cpp(recipe_run):
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    work, pack, _ = recipe_run
    tok = AutoTokenizer.from_pretrained(str(work / "hf"))
    llm = Llama(model_path=str(pack / "lm.gguf"), vocab_only=True, verbose=False)
    meta = json.loads((work / "data" / f"{json.loads((work / 'split.json').read_text())['train'][0]}.json").read_text())
    texts = [a["fine"] for a in meta["answers"][:20] if a]
    texts += [(TRAINING / "default-system-prompt.txt").read_text(), "Preceding epoch N\u20111: ",
              "<|im_start|>assistant\n{\"sleep_stage\": \"N2\"}<|im_end|>", "ünïcödé 12.5 uV — 3..3"]
    for text in texts:
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == tok.encode(text, add_special_tokens=False), text


def test_converter_child_recognises_only_qwen2_splitting(tmp_path, recipe_run):
    from sleepvlm_ws.core.model.gguf_convert_child import splits_like_qwen2

    work, _pack, _ = recipe_run
    assert splits_like_qwen2(work / "hf")
    doc = json.loads((work / "hf" / "tokenizer.json").read_text())
    doc["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\s+|\w+"
    (tmp_path / "tokenizer.json").write_text(json.dumps(doc))
    assert not splits_like_qwen2(tmp_path)
    assert not splits_like_qwen2(tmp_path / "nowhere")


def test_data_step_reads_a_folder_of_scored_studies(tmp_path, tiny_converter_dir):
    """--real-data: EDF + hypnogram pairs are read, mapped and rendered like the workstation does."""
    import numpy as np

    from sleepvlm_ws.core.base.hypnogram import Hypnogram
    from sleepvlm_ws.core.study.formats import export_hypnogram
    from sleepvlm_ws.core.synth.night import generate_night, write_night_edf

    studies = tmp_path / "studies"
    studies.mkdir()
    for seed in (7401, 7402):
        night = generate_night(seed=seed, hours=0.25, fs=100.0)
        write_night_edf(night, studies / f"night{seed}.edf", with_hypnogram=False)
        export_hypnogram(Hypnogram(stages=list(night.stages)), None, studies / f"night{seed}.tsv")
    work = tmp_path / "work"
    _run(TRAINING / "train_default.py", "data", "--work", work, "--real-data", studies, "--sizes", "smoke",
         "--workers", "1")
    split = json.loads((work / "split.json").read_text())
    assert sorted(split["train"] + split["val"]) == ["night7401", "night7402"]
    meta = json.loads((work / "data" / "night7401.json").read_text())
    arrays = np.load(work / "data" / "night7401.npz")
    assert meta["n_epochs"] == 30 and arrays["images"].shape == (30, 224, 448, 3)
    assert arrays["fmask"].all()                       # all six roles found by the montage
    assert all(a is not None and a["coarse"].endswith("}") for a in meta["answers"])
