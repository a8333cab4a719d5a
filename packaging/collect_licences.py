"""Copy the licence files of every Python distribution in the build environment into the bundle.

Usage: ``python collect_licences.py OUT_DIR`` (run by the build environment's interpreter).
The bundle redistributes these packages (Qt through PySide6 under the LGPL among them), so each
one's licence texts travel with it: OUT_DIR/<name>-<version>/<file>, plus OUT_DIR/INDEX.txt
listing name, version and the declared licence. Build-only tools (pip, wheel, setuptools) are
left out; PyInstaller stays, since its bootloader is part of the program.
"""

from __future__ import annotations

import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

BUILD_ONLY = {"pip", "wheel", "setuptools", "pyinstaller-hooks-contrib", "altgraph"}
LICENCE_NAME = re.compile(r"(licen[cs]e|copying|notice|authors|copyright)", re.IGNORECASE)


def _declared(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    text = meta.get("License-Expression") or ""
    if not text:
        short = (meta.get("License") or "").strip().splitlines()
        text = short[0][:80] if short else ""
    if not text:
        classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                       if c.startswith("License ::")]
        text = ", ".join(classifiers)
    return text or "see the files"


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for dist in sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = dist.metadata["Name"] or "unknown"
        if name.lower() in BUILD_ONLY:
            continue
        folder = out / f"{name}-{dist.version}"
        copied = 0
        for entry in dist.files or []:
            parts = entry.parts
            if not parts or not parts[0].endswith((".dist-info", ".egg-info")):
                continue
            if not LICENCE_NAME.search(entry.name):
                continue
            src = Path(dist.locate_file(entry))
            if src.is_file():
                target = folder / Path(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
                copied += 1
        rows.append(f"{name:<32} {dist.version:<14} {_declared(dist)}"
                    + ("" if copied else "  (no licence file shipped by the package)"))
    (out / "INDEX.txt").write_text(
        "Python distributions of the environment this bundle was built from (what is inside is\n"
        "a subset), their versions and declared licences. The licence texts they ship are in the\n"
        "folders beside this file.\n\n"
        + "\n".join(rows) + "\n", encoding="utf-8")
    print(f"licences: {len(rows)} distributions listed in {out / 'INDEX.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
