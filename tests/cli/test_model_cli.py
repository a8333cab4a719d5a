"""``sleepvlm-ws model list | verify | convert``, run as a user runs them (console script, subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packs import flat_transformers4_config, write_fake_pack

from sleepvlm_ws.core.model.model_pack import verify_pack


def run(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    exe = shutil.which("sleepvlm-ws", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "sleepvlm_ws.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def env(tmp_path, tiny_converter_dir) -> dict[str, str]:
    return {"SLEEPVLM_WS_HOME": str(tmp_path / "home"), "SLEEPVLM_WS_PACKS": str(tmp_path / "shelf"),
            "SLEEPVLM_WS_LLAMA_CPP_SRC": str(tiny_converter_dir)}


def test_model_list_and_verify(tmp_path, env, tiny_pack):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    (shelf / "tiny").symlink_to(tiny_pack, target_is_directory=True)
    write_fake_pack(shelf / "fake", name="fake-model", version="3")
    write_fake_pack(tmp_path / "home" / "packs" / "own", name="own-model")
    proc = run("model", "list", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    # the repository's own default pack (models/default) is always found too
    names = ["fake-model", "own-model", "sleepvlm-ws-default", "tiny-qwen25vl-test"]
    assert [ln.split()[0] for ln in lines] == names
    assert "0.0.1  Q4_K_M  39 MiB" in lines[3]
    listed = json.loads(run("model", "list", "--json", env=env).stdout)
    assert {m["name"] for m in listed} == set(names)
    assert all(m["format"] == "sleepvlm-pack" and Path(m["pack_dir"]).is_dir() for m in listed)
    empty = run("model", "list", "--dir", str(tmp_path / "nothing-here"), env=env)
    assert empty.returncode == 0 and "no model packs found" in empty.stdout

    ok = run("model", "verify", str(shelf / "tiny"), env=env)
    assert ok.returncode == 0, ok.stderr
    assert "model pack OK: tiny-qwen25vl-test 0.0.1 (Q4_K_M), 3 files match" in ok.stdout

    bad = shelf / "fake"
    with open(bad / "lm.gguf", "r+b") as fh:
        fh.seek(1234)
        fh.write(b"\xff\xfe")
    one_line_error(run("model", "verify", str(bad), env=env),
                   "lm.gguf: sha256 does not match the manifest (file changed or corrupt)")
    one_line_error(run("model", "verify", str(tmp_path), env=env), "not a model pack")


def _tree_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_model_convert_from_an_older_transformers_checkpoint(tmp_path, env, tiny_hf_checkpoint):
    # the released Qwen2.5-VL-3B layout (flat config, rope_scaling) without the top-level
    # "architectures" that transformers 4.57 leaves out and the converter's --mmproj pass needs
    hf = tmp_path / "SleepVLM-tiny"
    shutil.copytree(tiny_hf_checkpoint, hf)
    cfg = flat_transformers4_config(json.loads((hf / "config.json").read_text(encoding="utf-8")))
    assert "architectures" not in cfg and "text_config" not in cfg
    (hf / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (hf / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n", encoding="utf-8")
    before = _tree_digest(hf)  # the user's checkpoint folder is never written
    prompt = tmp_path / "their-prompt.md"
    prompt.write_text("You are SleepVLM.\n", encoding="utf-8")
    out = tmp_path / "packs" / "tiny-f16"
    proc = run("model", "convert", str(hf), "--name", "Tiny F16", "--quant", "f16",
               "--prompt", str(prompt), "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert "Converting the vision projector" in proc.stderr and "Quantising" not in proc.stderr
    assert _tree_digest(hf) == before
    m = verify_pack(out, cache=False)
    assert (m.name, m.quantisation, m.licence, m.version) == ("Tiny F16", "F16", "apache-2.0", "1")
    assert m.system_prompt() == "You are SleepVLM.\n" and m.prompt_file.path == "system-prompt.md"
    assert m.files["lm"].bytes > 80 * 2**20  # f16: twice the size of the Q4_K_M tiny pack
    card = m.model_card_path.read_text(encoding="utf-8")
    assert "SleepVLM-tiny" in card and "hidden 256, 2 layers" in card
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny-f16"]  # no staging left behind


def test_model_convert_bad_input(tmp_path, env):
    not_hf = tmp_path / "photos"
    not_hf.mkdir()
    one_line_error(run("model", "convert", str(not_hf), "--name", "x", env=env),
                   "photos", "no config.json")
    proc = run("model", "convert", str(not_hf), env=env)  # --name is required
    assert proc.returncode == 2 and "--name" in proc.stderr
    proc = run("model", "convert", str(not_hf), "--name", "x", "--quant", "Q3_XL", env=env)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
