"""Durability helpers shared by everything that writes files the technologist relies on."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk; best effort on POSIX.

    Does nothing on other systems; a folder that cannot be opened or synced is passed over
    silently.

    Parameters
    ----------
    folder : Path
        The folder whose list of entries must survive a power cut (e.g. where a file was just
        renamed into place).
    """
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
