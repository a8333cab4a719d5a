"""The default model pack shipped in models/default: complete, small, and what the workstation
and its training recipe expect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sleepvlm_ws.core.model.model_pack import load_manifest, verify_pack
from sleepvlm_ws.core.signals.render import RENDERER_VERSION

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / "models" / "default"
TRAINING_PROMPT = REPO / "models" / "training" / "default-system-prompt.txt"
MAX_BYTES = 60 * 1024 * 1024


def sleepvlm_ws(home: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("sleepvlm-ws", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "sleepvlm_ws.cli"]
    env = dict(os.environ, SLEEPVLM_WS_HOME=str(home))
    env.pop("SLEEPVLM_WS_PACKS", None)
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, env=env)


def test_the_pack_verifies_against_its_manifest():
    manifest = verify_pack(PACK, cache=False)  # every file hashed, nothing remembered
    assert manifest.name == "sleepvlm-ws-default"
    assert manifest.quantisation == "Q4_K_M"
    assert set(manifest.files) == {"lm", "mmproj"}
    assert manifest.model_card_path is not None and manifest.model_card_path.is_file()


def test_the_pack_is_small():
    files = [p for p in PACK.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert 0 < total <= MAX_BYTES, f"{total / 2**20:.1f} MiB"
    listed = {f.path for _, f in load_manifest(PACK).all_files()} | {"manifest.json", "MODEL_CARD.md"}
    assert {p.relative_to(PACK).as_posix() for p in files} <= listed  # nothing stray in the pack


def test_prompt_and_renderer_are_the_ones_it_was_trained_with():
    manifest = load_manifest(PACK)
    assert manifest.prompt_path.read_bytes() == TRAINING_PROMPT.read_bytes()
    raw = json.loads((PACK / "manifest.json").read_text(encoding="utf-8"))
    assert raw["renderer_version"] == RENDERER_VERSION


def test_model_list_shows_it_and_it_is_the_default(tmp_path):
    proc = sleepvlm_ws(tmp_path, "model", "list")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("sleepvlm-ws-default ")]
    assert len(lines) == 1, proc.stdout
    assert "Q4_K_M" in lines[0] and lines[0].endswith(str(PACK))
    listed = json.loads(sleepvlm_ws(tmp_path, "model", "list", "--json").stdout)
    assert [Path(p["pack_dir"]).resolve() for p in listed
            if p["name"] == "sleepvlm-ws-default"] == [PACK.resolve()]
    proc = sleepvlm_ws(tmp_path, "model", "verify", str(PACK), "--no-cache")
    assert proc.returncode == 0 and "model pack OK" in proc.stdout, proc.stderr

    from sleepvlm_ws.cli.common import default_pack

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLEEPVLM_WS_HOME", str(tmp_path))
        mp.delenv("SLEEPVLM_WS_PACKS", raising=False)
        assert default_pack().resolve() == PACK.resolve()


def test_model_card_says_it_is_not_validated_on_real_patients():
    card = (PACK / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "not validated on real patients" in " ".join(card.split())
