"""llama.cpp's Hugging Face -> GGUF converter, fetched when needed, never shipped.

``convert_hf_to_gguf.py`` (with its ``conversion/`` package and the vendored ``gguf-py``) lives
only in the llama-cpp-python *source* distribution, not in the installed wheel. We fetch the
sdist of exactly the installed llama-cpp-python version with pip, keep only the converter's
files in a per-user cache, and run the script in a child process. An offline machine can point
``$SLEEPVLM_WS_LLAMA_CPP_SRC`` at an already downloaded sdist (``.tar.gz``) or at a llama.cpp
source folder instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath

from ...errors import ModelPackError
from ...paths import user_data_dir

CONVERTER_SCRIPT = "convert_hf_to_gguf.py"
SOURCE_ENV = "SLEEPVLM_WS_LLAMA_CPP_SRC"
_KEEP = (CONVERTER_SCRIPT, "conversion/", "gguf-py/")
_MARKER = "SOURCE.json"
PIP_TIMEOUT_S = 30 * 60


def installed_llama_cpp_version() -> str:
    """The installed llama-cpp-python version; ModelPackError when it is not installed."""
    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        try:  # a build without package metadata (e.g. the bindings copied beside their libraries)
            import llama_cpp  # late: only to read the version of a build without metadata

            return str(llama_cpp.__version__)
        except ImportError:
            pass
        raise ModelPackError(None, "llama-cpp-python is not installed; install it "
                                   "(pip install 'sleepvlm-ws[convert]') to convert checkpoints") from None


def default_cache_dir() -> Path:
    return user_data_dir() / "converter"


def _is_converter_dir(path: Path) -> bool:
    return (path / CONVERTER_SCRIPT).is_file() and (path / "gguf-py" / "gguf").is_dir()


def _extract_converter(sdist: Path, dest: Path) -> None:
    """Unpack only the converter's files (under vendor/llama.cpp/) from an sdist into ``dest``."""
    try:
        with tarfile.open(sdist, "r:*") as tar:
            picked = []
            for member in tar.getmembers():
                parts = PurePosixPath(member.name).parts
                if "vendor" not in parts or ".." in parts:
                    continue
                i = parts.index("vendor")
                if parts[i + 1: i + 2] != ("llama.cpp",):
                    continue
                rel = "/".join(parts[i + 2:])
                if not (rel == CONVERTER_SCRIPT or rel.startswith(_KEEP[1:])):
                    continue
                if not (member.isfile() or member.isdir()):
                    continue  # no links or devices from an archive
                member.name = rel
                picked.append(member)
            if not any(m.name == CONVERTER_SCRIPT for m in picked):
                raise ModelPackError(sdist, f"no vendor/llama.cpp/{CONVERTER_SCRIPT} in this source archive")
            for member in picked:
                target = dest / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                with open(target, "wb") as fh:
                    shutil.copyfileobj(src, fh)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelPackError(sdist, f"cannot unpack the llama-cpp-python source archive: {exc}") from None


def _download_sdist(version: str, into: Path, progress) -> Path:
    if progress:
        progress(f"Fetching llama.cpp's converter (llama-cpp-python {version} source from PyPI)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-q", f"llama-cpp-python=={version}", "-d", str(into)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ModelPackError(None, f"downloading the llama-cpp-python {version} source timed out; "
                                   f"set {SOURCE_ENV} to a downloaded sdist") from None
    archives = sorted(into.glob("llama_cpp_python-*.tar.gz")) + sorted(into.glob("llama-cpp-python-*.tar.gz"))
    if proc.returncode != 0 or not archives:
        last = next((ln for ln in reversed((proc.stderr or proc.stdout or "").splitlines()) if ln.strip()),
                    f"pip exited with {proc.returncode}")
        raise ModelPackError(None, f"cannot download the llama-cpp-python {version} source "
                                   f"(needed for the converter): {last.strip()[:200]}; "
                                   f"offline, set {SOURCE_ENV} to a downloaded sdist")
    return archives[0]


def ensure_converter(*, cache_dir: Path | None = None, source: str | Path | None = None,
                     progress=None) -> Path:
    """A folder holding ``convert_hf_to_gguf.py`` for the installed llama-cpp-python version.

    ``source`` (or ``$SLEEPVLM_WS_LLAMA_CPP_SRC``): a llama.cpp folder with the converter, or a
    llama-cpp-python sdist to unpack. Otherwise the sdist is fetched with pip, once per version.
    """
    source = source or os.environ.get(SOURCE_ENV) or None
    if source is not None:
        src = Path(source).expanduser()
        for cand in (src, src / "vendor" / "llama.cpp"):
            if cand.is_dir() and _is_converter_dir(cand):
                return cand
        if not src.is_file():
            raise ModelPackError(src, f"not a llama.cpp source folder with {CONVERTER_SCRIPT} "
                                      "nor a llama-cpp-python source archive")
    version = installed_llama_cpp_version()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = f"llama-cpp-python-{version}" if source is None else f"sdist-{Path(source).name}"
    final = cache / tag
    if _is_converter_dir(final) and (final / _MARKER).is_file():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache) as tmp:
        tmp = Path(tmp)
        if source is not None:
            sdist = Path(source).expanduser()
        else:
            sdist = _download_sdist(version, tmp / "dl", progress)
        staging = tmp / "converter"
        staging.mkdir()
        _extract_converter(sdist, staging)
        (staging / _MARKER).write_text(json.dumps({
            "llama_cpp_python": version, "sdist": sdist.name,
            "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2), encoding="utf-8")
        if _is_converter_dir(final) and (final / _MARKER).is_file():
            return final  # another process fetched it meanwhile: keep its copy (it may be in use)
        if final.exists():  # a half-made folder from an interrupted run
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(staging, final)
        except OSError as exc:
            if not _is_converter_dir(final):
                raise ModelPackError(final, f"cannot store the converter: {exc.strerror or exc}") from None
    return final


def converter_env() -> dict[str, str]:
    """Environment for the converter child: offline, UTF-8, the vendored gguf-py first."""
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONIOENCODING="utf-8",
               TOKENIZERS_PARALLELISM="false")
    return env


def run_logged(cmd: list[str], log_path: Path, *, cwd: Path | None = None, env=None,
               cancel=None, what: str = "converter", subject: Path | None = None) -> None:
    """Run a child process with its output going to ``log_path``; one-line error on failure.

    ``cancel``: an object with ``is_set()`` (a threading.Event); when set the child is stopped.
    ``subject``: the file or folder the error message names (the checkpoint being converted).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL)
        try:
            while True:
                try:
                    rc = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if cancel is not None and cancel.is_set():
                        proc.terminate()
                        try:
                            proc.wait(timeout=10)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            proc.wait()
                        raise ModelPackError(subject, f"{what} cancelled")
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
    if rc != 0:
        raise ModelPackError(subject, f"{what} failed: {last_error_line(log_path)} (log: {log_path})")


def last_error_line(log_path: Path) -> str:
    """The line of a child's log that best says what went wrong (usually the exception)."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no log"
    lines = [ln for ln in lines if ln and not ln.startswith(("INFO:", "Writing:", "$ "))]
    for ln in reversed(lines):
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) or ln.startswith(("ERROR", "error:")):
            return ln[:240]
    return (lines[-1][:240] if lines else "no output")
