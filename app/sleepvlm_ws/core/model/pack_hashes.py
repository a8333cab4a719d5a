"""SHA-256 of large model files, remembered so the workstation does not rehash 2 GB at every start.

A remembered hash is used only while the file is provably the one that was hashed: same device,
inode, size, modification time *and* status-change time (ctime). ctime cannot be set back by
``touch`` or ``os.utime``: any write, rename or metadata change moves it, so a changed file always
misses the cache and is hashed again. A file whose timestamps are younger than the filesystem's
timestamp granularity allows ("racy": it could still change within the same clock tick without its
times moving) is hashed but not remembered, as git does for its index.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from ...paths import user_data_dir

CACHE_NAME = "pack-hash-cache.json"
CACHE_VERSION = 1
# Files whose mtime/ctime are younger than this are never remembered (coarse kernel clocks).
RACY_SECONDS = 2.0
_CHUNK = 4 * 1024 * 1024


def sha256_of(path: Path, *, on_bytes=None) -> str:
    """Hash a file in 4 MiB chunks; ``on_bytes(n)`` is called after each chunk (progress)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class HashCache:
    """A small JSON file: resolved path -> (file identity, sha256). Never trusted beyond identity."""

    def __init__(self, path: Path | None):
        self.path = path
        self._entries: dict[str, dict] = {}
        self._dirty = False
        if path is not None:
            try:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("version") == CACHE_VERSION:
                    entries = data.get("files")
                    if isinstance(entries, dict):
                        self._entries = entries
            except (OSError, ValueError):
                self._entries = {}  # a missing or damaged cache only costs a rehash

    @classmethod
    def default(cls) -> "HashCache":
        return cls(user_data_dir() / CACHE_NAME)

    def sha256(self, path: Path, *, on_bytes=None) -> str:
        """The file's SHA-256, from the cache when its identity is unchanged, else computed."""
        key = str(Path(path).resolve())
        before = os.stat(path)
        entry = self._entries.get(key)
        if (isinstance(entry, dict) and entry.get("id") == _identity(before)
                and isinstance(entry.get("sha256"), str)):
            return entry["sha256"]
        digest = sha256_of(path, on_bytes=on_bytes)
        after = os.stat(path)
        newest = max(after.st_mtime_ns, after.st_ctime_ns) / 1e9
        if _identity(after) == _identity(before) and time.time() - newest > RACY_SECONDS:
            self._entries[key] = {"id": _identity(after), "sha256": digest}
            self._dirty = True
        elif key in self._entries:
            del self._entries[key]
            self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache atomically; failure to write is not an error (only a later rehash)."""
        if self.path is None or not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            live = {k: v for k, v in self._entries.items() if os.path.exists(k)}
            fd, tmp = tempfile.mkstemp(prefix=".hash-cache-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": CACHE_VERSION, "files": live}, fh)
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            pass
