"""Where bundled resources and per-user data live."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path | None:
    """The source checkout this package runs from (editable install), if any."""
    root = _PACKAGE_DIR.parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def resources_dir() -> Path:
    """The resources/ folder: repository copy first, then a copy bundled beside the package."""
    root = repo_root()
    if root is not None and (root / "resources").is_dir():
        return root / "resources"
    return _PACKAGE_DIR / "resources"


def user_data_dir() -> Path:
    """Per-user writable folder (demo study, recent-studies list, settings)."""
    base = os.environ.get("SLEEPVLM_WS_HOME")
    if base:
        path = Path(base)
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(xdg) / "sleepvlm-ws"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_scorer() -> str:
    """Who is at the keyboard: the operating-system user name, or "technologist"."""
    import getpass

    try:
        return getpass.getuser() or "technologist"
    except Exception:  # noqa: BLE001 - getuser raises when no name can be found
        return "technologist"
