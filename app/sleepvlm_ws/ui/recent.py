"""The "Open recent" list: recordings (and their study files) kept in a small JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from .. import paths

RECENT_FILE = "recent.json"
MAX_RECENT = 10


def _file() -> Path:
    return paths.user_data_dir() / RECENT_FILE


def load_recent() -> list[dict]:
    """Entries ``{"recording": str, "study": str | None}``, newest first; [] if unreadable."""
    try:
        raw = json.loads(_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict) and isinstance(item.get("recording"), str):
            study = item.get("study")
            entries.append({"recording": item["recording"],
                            "study": study if isinstance(study, str) else None})
    return entries[:MAX_RECENT]


def add_recent(recording: str | Path, study: str | Path | None = None) -> list[dict]:
    """Put ``recording`` first (once) and save; failures to save are ignored (it is a convenience)."""
    recording = str(Path(recording).resolve())
    entry = {"recording": recording, "study": None if study is None else str(Path(study).resolve())}
    entries = [entry] + [e for e in load_recent() if e["recording"] != recording]
    entries = entries[:MAX_RECENT]
    try:
        path = _file()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass
    return entries
