"""Model pack manifests, verification before loading, the hash cache and pack discovery.

Packs here are real folders with real files; their GGUFs are random bytes (verification never
parses them). Loading a real converted pack is in test_convert.py.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from packs import copy_pack, write_fake_pack

from sleepvlm_ws.core.model import pack_hashes
from sleepvlm_ws.core.model.model_pack import (ANSWER_SCHEMA, MANIFEST_NAME, RENDERER_VERSION, REQUEST_LAYOUT,
                                               SLEEPVLM_RULE_IDS, PackManifest, list_packs, load_manifest,
                                               verify_pack, write_manifest)
from sleepvlm_ws.core.model.pack_hashes import HashCache
from sleepvlm_ws.errors import InputError, ModelPackError

SPEC_KEYS = ["format", "format_version", "name", "version", "files", "quantisation", "prompt_file",
             "renderer_version", "request_layout", "answer_schema", "rule_vocabulary",
             "context_size", "licence", "model_card", "created_by"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """Hash cache and user packs/ in a temporary user data folder, never the real one."""
    path = tmp_path / "home"
    monkeypatch.setenv("SLEEPVLM_WS_HOME", str(path))
    monkeypatch.delenv("SLEEPVLM_WS_PACKS", raising=False)
    return path


@pytest.fixture
def pack(tmp_path) -> Path:
    return write_fake_pack(tmp_path / "packs" / "fake", name="fake")


def one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, text
    return text


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x01]))


# -- manifest --------------------------------------------------------------------------------
def test_manifest_round_trip(pack):
    m = load_manifest(pack)
    raw = json.loads((pack / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert list(raw) == SPEC_KEYS
    assert raw["format"] == "sleepvlm-pack" and raw["format_version"] == 1
    assert set(raw["files"]) == {"lm", "mmproj"}
    assert set(raw["prompt_file"]) == {"path", "sha256", "bytes"}
    assert m.renderer_version == RENDERER_VERSION == "svlm-render-1"
    assert m.request_layout == REQUEST_LAYOUT == "sleepvlm-3-epoch-v1"
    assert m.answer_schema == ANSWER_SCHEMA == "sleepvlm-answer-v1"
    assert m.rule_vocabulary == SLEEPVLM_RULE_IDS and len(SLEEPVLM_RULE_IDS) == 15
    assert m.pack_dir == pack.resolve()
    assert m.lm_path == pack.resolve() / "lm.gguf" and m.mmproj_path.is_file()
    assert m.system_prompt() == "You score sleep (fake).\n"
    assert m.model_card_path.read_text(encoding="utf-8") == "# fake\n"
    # write -> read gives the same manifest; a second write is byte-identical
    other = pack.parent / "copy"
    copy_pack(pack, pack.parent, "copy")
    write_manifest(replace(m, version="2"), other)
    again = load_manifest(other)
    assert again == replace(m, version="2")
    before = (other / MANIFEST_NAME).read_bytes()
    write_manifest(again, other)
    assert (other / MANIFEST_NAME).read_bytes() == before
    assert PackManifest.from_dict(again.to_dict()) == again


def test_pack_contract_matches_the_workstation():
    """What a pack promises is what the renderer, the rule catalogue and the answer reader give."""
    from sleepvlm_ws.core.base.rules import rule_ids
    from sleepvlm_ws.core.model.answer import FIELD_ORDER
    from sleepvlm_ws.core.signals import render

    assert RENDERER_VERSION == render.RENDERER_VERSION
    assert list(SLEEPVLM_RULE_IDS) == rule_ids()
    assert FIELD_ORDER == ("reasoning_text", "applicable_rules", "sleep_stage")


def _edit_manifest(pack: Path, change) -> None:
    path = pack / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.update(format="gguf"), "'format' is 'gguf'"),
    (lambda d: d.update(format_version=7), "format version 7 is newer"),
    (lambda d: d.pop("files"), "'files' is missing"),
    (lambda d: d["files"].pop("mmproj"), "'files.mmproj' is missing"),
    (lambda d: d["files"]["lm"].update(path="../../etc/passwd"), "must be a path inside the pack"),
    (lambda d: d["files"]["lm"].update(path="/etc/passwd"), "must be a path inside the pack"),
    (lambda d: d["prompt_file"].update(path="C:\\\\prompt.txt"), "must be a path inside the pack"),
    (lambda d: d["files"]["mmproj"].update(sha256="abc"), "not a lower-case SHA-256"),
    (lambda d: d["files"]["mmproj"].update(bytes="12"), "'files.mmproj.bytes' is not a file size"),
    (lambda d: d.update(context_size=0), "'context_size'"),
    (lambda d: d.update(rule_vocabulary="W.1"), "'rule_vocabulary'"),
    (lambda d: d.pop("name"), "'name' is missing"),
])
def test_bad_manifest_is_one_line_naming_it(pack, change, needle):
    _edit_manifest(pack, change)
    with pytest.raises(ModelPackError) as exc:
        verify_pack(pack)
    one_line(exc, str(pack / MANIFEST_NAME), needle)


def test_not_a_pack(tmp_path, pack):
    (pack / MANIFEST_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelPackError) as exc:
        load_manifest(pack)
    one_line(exc, "manifest.json", "bad JSON")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelPackError) as exc:
        load_manifest(empty)
    one_line(exc, "empty", "not a model pack: no manifest.json")
    with pytest.raises(InputError) as exc:
        verify_pack(tmp_path / "nowhere")
    one_line(exc, "nowhere", "model pack folder not found")


def test_pack_written_by_a_newer_format_is_refused_with_advice(pack):
    _edit_manifest(pack, lambda d: d.update(request_layout="sleepvlm-5-epoch-v2"))
    with pytest.raises(ModelPackError) as exc:
        verify_pack(pack)
    one_line(exc, "manifest.json", "sleepvlm-5-epoch-v2")


# -- verification before loading -------------------------------------------------------------
def test_intact_pack_verifies(pack):
    m = verify_pack(pack)
    assert m.name == "fake" and m.quantisation == "Q4_K_M"
    seen = []
    verify_pack(pack, cache=False, progress=lambda done, total: seen.append((done, total)))
    total = sum(f.bytes for _, f in m.all_files())
    assert seen and seen[-1] == (total, total)


def test_flipped_byte_is_refused(pack):
    flip_byte(pack / "lm.gguf", 150_000)
    with pytest.raises(ModelPackError) as exc:
        verify_pack(pack)
    text = one_line(exc, "sha256 does not match the manifest (file changed or corrupt)")
    assert text == (f"{(pack / 'lm.gguf').resolve()}: "
                    "sha256 does not match the manifest (file changed or corrupt)")


def test_truncated_file_is_refused(pack):
    data = (pack / "mmproj.gguf").read_bytes()
    (pack / "mmproj.gguf").write_bytes(data[:-1000])
    with pytest.raises(ModelPackError) as exc:
        verify_pack(pack)
    one_line(exc, "mmproj.gguf", "size 59000 bytes does not match the manifest (60000 bytes)", "truncated")


def test_swapped_mmproj_is_refused(tmp_path, pack):
    # another pack's projector of exactly the same size: only the hash can tell
    other = write_fake_pack(tmp_path / "other", name="other", seed=1)
    os.replace(other / "mmproj.gguf", pack / "mmproj.gguf")
    with pytest.raises(ModelPackError) as exc:
        verify_pack(pack)
    one_line(exc, "mmproj.gguf", "sha256 does not match")
    # the language model put where the projector belongs
    (pack / "mmproj.gguf").write_bytes((pack / "lm.gguf").read_bytes())
    with pytest.raises(ModelPackError) as exc:
        verify_pack(pack)
    one_line(exc, "mmproj.gguf", "larger than expected or replaced")


def test_missing_file_is_refused_before_anything_is_hashed(pack):
    (pack / "system-prompt.txt").unlink()
    flip_byte(pack / "lm.gguf", 10)  # also changed, but the missing file is reported first
    seen = []
    with pytest.raises(ModelPackError) as exc:
        verify_pack(pack, progress=lambda done, total: seen.append(done))
    one_line(exc, "system-prompt.txt", "missing")
    assert seen == []  # no byte was hashed


# -- the hash cache ----------------------------------------------------------------------------
def test_hash_cache_is_used_but_never_accepts_a_changed_file(pack, home, monkeypatch):
    monkeypatch.setattr(pack_hashes, "RACY_SECONDS", -1.0)  # remember even just-written files
    verify_pack(pack)
    cache_file = home / pack_hashes.CACHE_NAME
    entries = json.loads(cache_file.read_text(encoding="utf-8"))["files"]
    lm = str((pack / "lm.gguf").resolve())
    assert lm in entries and len(entries) == 3
    # the cache is really consulted: a wrong remembered hash for an unchanged file is believed
    good = entries[lm]["sha256"]
    entries[lm]["sha256"] = "0" * 64
    cache_file.write_text(json.dumps({"version": 1, "files": entries}), encoding="utf-8")
    with pytest.raises(ModelPackError):
        verify_pack(pack)
    assert verify_pack(pack, cache=False).files["lm"].sha256 == good
    entries[lm]["sha256"] = good
    cache_file.write_text(json.dumps({"version": 1, "files": entries}), encoding="utf-8")
    verify_pack(pack)
    # a changed file with its size and modification time put back is hashed again
    st = os.stat(pack / "lm.gguf")
    time.sleep(0.05)  # let the kernel's coarse clock tick, so the change moves ctime
    flip_byte(pack / "lm.gguf", 200_000)
    os.utime(pack / "lm.gguf", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(pack / "lm.gguf").st_mtime_ns == st.st_mtime_ns
    with pytest.raises(ModelPackError) as exc:
        verify_pack(pack)
    one_line(exc, "lm.gguf", "sha256 does not match")


def test_hash_cache_does_not_remember_racy_files(pack, home):
    cache = HashCache(home / "cache.json")
    digest = cache.sha256(pack / "lm.gguf")  # written a moment ago: could still change unseen
    cache.save()
    assert digest == load_manifest(pack).files["lm"].sha256
    assert not (home / "cache.json").exists()


def test_damaged_hash_cache_only_costs_a_rehash(pack, home):
    home.mkdir(parents=True, exist_ok=True)
    (home / pack_hashes.CACHE_NAME).write_bytes(b"\x00garbage")
    assert verify_pack(pack).name == "fake"


# -- finding packs ---------------------------------------------------------------------------
def test_list_packs_finds_packs_and_reports_broken_ones(tmp_path, home, monkeypatch):
    shelf = tmp_path / "shelf"
    write_fake_pack(shelf / "b", name="Beta", version="2")
    write_fake_pack(shelf / "a", name="alpha", version="1")
    (shelf / "not-a-pack").mkdir()
    broken = write_fake_pack(shelf / "broken", name="broken")
    (broken / MANIFEST_NAME).write_text("[]", encoding="utf-8")
    problems: list = []
    found = list_packs([shelf, tmp_path / "missing-folder"], problems=problems)
    assert [(m.name, m.version) for m in found] == [("alpha", "1"), ("Beta", "2")]
    assert len(problems) == 1 and "broken" in str(problems[0])
    # a pack folder itself may be a search folder; the same pack twice is listed once
    assert [m.name for m in list_packs([shelf / "a", shelf])] == ["alpha", "Beta"]
    # default search: the user's packs/ and $SLEEPVLM_WS_PACKS
    write_fake_pack(home / "packs" / "mine", name="mine")
    monkeypatch.setenv("SLEEPVLM_WS_PACKS", os.pathsep.join([str(shelf), str(tmp_path / "nothing")]))
    names = [m.name for m in list_packs()]
    assert {"mine", "alpha", "Beta"} <= set(names)
    assert "broken" not in names


def test_a_pack_may_declare_either_renderer_and_nothing_else(pack):
    from sleepvlm_ws.core.model.model_pack import RENDERERS
    from sleepvlm_ws.core.signals import render

    assert RENDERERS == render.RENDERERS == ("svlm-render-1", "svlm-render-2")
    path = pack / MANIFEST_NAME
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["renderer_version"] = "svlm-render-2"            # SleepVLM's own pixels
    path.write_text(json.dumps(raw), encoding="utf-8")
    assert verify_pack(pack).renderer_version == "svlm-render-2"
    raw["renderer_version"] = "svlm-render-9"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ModelPackError) as exc:
        verify_pack(pack)
    one_line(exc, "svlm-render-9", "does not provide", "manifest.json")
