"""The bundled demo study: a synthetic night generated once, deterministically, on first use.

The recording is ~90 MB, so it is generated (about 10 s) into the user data folder instead of
being stored in the repository. Its seed and generator version name the file, so a change
to the generator never silently reuses an old night.
"""

from __future__ import annotations

import os
from pathlib import Path

from .core.synth import generate_night, write_night_edf
from .paths import user_data_dir

DEMO_SEED = 2026
DEMO_GENERATOR_VERSION = 2
DEMO_NAME = f"demo-night-s{DEMO_SEED}-g{DEMO_GENERATOR_VERSION}.edf"


def demo_recording_path(folder: Path | None = None) -> Path:
    return (folder or user_data_dir() / "demo") / DEMO_NAME


def ensure_demo_recording(folder: Path | None = None, progress=print) -> Path:
    """Return the demo EDF, generating it first if it is not there yet."""
    path = demo_recording_path(folder)
    if path.is_file():
        return path

    path.parent.mkdir(parents=True, exist_ok=True)
    progress(f"Generating the demo night (one time, ~10 s): {path}")
    night = generate_night(seed=DEMO_SEED, hours=8.0, fs=256.0)
    tmp = path.with_name(path.stem + ".part.edf")
    write_night_edf(night, tmp)
    os.replace(tmp, path)
    return path
