"""Where bundled resources and per-user data live."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path | None:
    """The source checkout this package runs from (editable install), if any."""
    root = _PACKAGE_DIR.parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def bundle_dir() -> Path | None:
    """The data folder of a frozen desktop bundle (PyInstaller, packaging/), else None."""
    if not getattr(sys, "frozen", False):
        return None
    return Path(getattr(sys, "_MEIPASS", Path(sys.executable).resolve().parent))


def resources_dir() -> Path:
    """The resources/ folder: repository copy first, then a frozen bundle's, then one beside the package."""
    root = repo_root()
    if root is not None and (root / "resources").is_dir():
        return root / "resources"
    bundled = bundle_dir()
    if bundled is not None and (bundled / "resources").is_dir():
        return bundled / "resources"
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
    try:
        return getpass.getuser() or "technologist"
    except Exception:  # noqa: BLE001 - getuser raises when no name can be found
        return "technologist"
