"""Shared pytest setup. Keep small: fixtures for one area belong in that area's test files."""

import os

# Real Qt widgets without a display (pytest-qt); must be set before Qt is imported.
os.environ["QT_QPA_PLATFORM"] = "offscreen"

# fixtures pack_manifest and server (llama-cpp-python's server on loopback, the tiny pack)
pytest_plugins = ["llama_cpp_server"]

import pytest as _pytest_mod  # noqa: E402


@_pytest_mod.fixture
def errors(monkeypatch):
    """Texts of the error dialogs the GUI showed. The one allowed shim: a modal box cannot be
    clicked offscreen, so QMessageBox.critical records its text instead of blocking."""
    from PySide6.QtWidgets import QMessageBox

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "critical",
                        staticmethod(lambda parent, title, text, *a, **k: shown.append(text)))
    return shown


# -- model packs ----------------------------------------------------------------------------
import hashlib as _hashlib
from pathlib import Path as _Path

import pytest as _pytest

_TINY_PACK_INPUTS = ("tests/packs.py", "app/sleepvlm_ws/core/model/convert.py",
                     "app/sleepvlm_ws/core/model/llama_converter.py", "app/sleepvlm_ws/core/model/model_pack.py",
                     "resources/prompts/sleepvlm-ws-system-prompt.txt")


def _tiny_cache_slot(request, what: str) -> tuple[_Path, _Path]:
    """(cache folder for ``what``, this builder version's slot in it)."""
    from importlib.metadata import version

    root = _Path(__file__).resolve().parents[1]
    key = _hashlib.sha256()
    for rel in _TINY_PACK_INPUTS:
        key.update(rel.encode() + b"\0" + (root / rel).read_bytes())
    for dist in ("llama-cpp-python", "transformers", "torch"):
        key.update(f"{dist}={version(dist)}".encode())
    base = _Path(request.config.cache.mkdir(what))
    return base, base / key.hexdigest()[:16]


class _BuildLock:
    """Serialise builds into one cache folder across concurrent pytest sessions (flock)."""

    def __init__(self, base: _Path):
        self.path = base / ".build-lock"

    def __enter__(self):
        self.fh = open(self.path, "a+b")
        try:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no concurrent sessions expected
            pass
        return self

    def __exit__(self, *exc):
        self.fh.close()  # releases the lock


def _build_into_slot(base: _Path, slot: _Path, marker: str, build) -> _Path:
    """Build once per slot: under the lock, drop half-made builds and day-old slots, build, rename."""
    import os
    import shutil
    import time

    if (slot / marker).is_file():
        return slot
    with _BuildLock(base):
        if (slot / marker).is_file():  # another session built it while we waited
            return slot
        for old in base.iterdir():
            half_made = ".partial-" in old.name
            stale = time.time() - old.stat().st_mtime > 86400  # may still serve another checkout
            if old.is_dir() and old.name != "home" and (half_made or stale):
                shutil.rmtree(old, ignore_errors=True)
        partial = base / f"{slot.name}.partial-{os.getpid()}"
        build(partial)
        os.replace(partial, slot)
    return slot


@_pytest.fixture(scope="session")
def tiny_converter_dir(request) -> _Path:
    """llama.cpp's converter, fetched once into the pytest cache (pip download of the sdist)."""
    from sleepvlm_ws.core.model.llama_converter import ensure_converter

    return ensure_converter(cache_dir=_Path(request.config.cache.mkdir("sleepvlm-converter")))


@_pytest.fixture(scope="session")
def tiny_hf_checkpoint(request) -> _Path:
    """A tiny random-weight Qwen2.5-VL checkpoint folder (tests/packs.py), cached. Read-only."""
    from packs import build_tiny_qwen25vl  # tests/ is on sys.path (rootdir conftest)

    base, slot = _tiny_cache_slot(request, "sleepvlm-tiny-hf")
    return _build_into_slot(base, slot, "config.json", build_tiny_qwen25vl)


@_pytest.fixture(scope="session")
def tiny_pack(request, tiny_converter_dir, tiny_hf_checkpoint) -> _Path:
    """A real model pack made by convert_checkpoint from the tiny random-weight Qwen2.5-VL
    (what tests/packs.py: build_tiny_pack does, sharing the checkpoint fixture).

    Built once and kept in the pytest cache, keyed on the builder/converter source and the
    library versions, so later sessions reuse it (~20 s to rebuild). Treat it as read-only:
    copy it (tests/packs.py: copy_pack) before changing anything in it.
    """
    from packs import convert_tiny_checkpoint

    base, slot = _tiny_cache_slot(request, "sleepvlm-tiny-pack")

    def build(partial: _Path) -> None:
        with _pytest.MonkeyPatch.context() as mp:  # keep logs and caches out of the real home
            mp.setenv("SLEEPVLM_WS_HOME", str(base / "home"))
            convert_tiny_checkpoint(tiny_hf_checkpoint, partial, converter_cache=tiny_converter_dir.parent)

    return _build_into_slot(base, slot, "manifest.json", build)
