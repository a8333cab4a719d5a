"""EDF+ hypnogram: an annotation-only EDF+ file like Sleep-EDF's ``*-Hypnogram.edf``, with one
"Sleep stage W/1/2/3/R/?" or "Movement time" annotation per scored period. When the study's
decisions are given, the header's recording field says how many stages are accepted suggestions
led by YASA and how many the model's (``suggested:YASA_12,model_3``).

Import reads any EDF+/BDF+ file's stage annotations: Sleep-EDF hypnograms (periods of many
epochs, R&K stage 4 as N3), MASS-style per-epoch annotation files, and PSG files carrying
stage annotations beside other events (which are skipped, with a warning).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyedflib

from ....errors import HypnogramFormatError
from ...base.hypnogram import Hypnogram
from ...base.stages import Stage, parse_stage
from ._common import FileScoring, check_readable, suggestion_origins, write_atomically
from .edf_annotations import read_edf_annotations

NAME = "edf"
SUFFIXES = (".edf", ".bdf")
DESCRIPTION = "EDF+ annotations (Sleep-EDF style)"

LABELS = {
    Stage.W: "Sleep stage W",
    Stage.N1: "Sleep stage 1",
    Stage.N2: "Sleep stage 2",
    Stage.N3: "Sleep stage 3",
    Stage.R: "Sleep stage R",
    Stage.UNSCORED: "Sleep stage ?",
    Stage.ARTEFACT: "Movement time",
}
# EDF cannot say "start unknown": we write 1 Jan 1985 00:00:00 (the first date EDF can hold,
# also what anonymised files carry) and read that back as unknown.
UNKNOWN_START = datetime(1985, 1, 1)
_EDF_YEARS = range(1985, 2085)


def write(hyp: Hypnogram, path: Path, *, decisions=None, audit=None, meta=None) -> None:
    start = hyp.start
    if start is None or start.year not in _EDF_YEARS:
        start = UNKNOWN_START
    start = start.replace(tzinfo=None, microsecond=0)

    def write_to(tmp: Path) -> None:
        try:
            writer = pyedflib.EdfWriter(str(tmp), 0, file_type=pyedflib.FILETYPE_EDFPLUS)
        except Exception as e:  # pyedflib reports open failures as plain exceptions
            raise OSError(str(e)) from None
        try:
            writer.setStartdatetime(start)
            writer.setEquipment("SleepVLM-WS")
            if origins:   # the header's recording field (short): which sources, how many
                writer.setRecordingAdditional(_origins_short(origins))
            for onset, duration, stage in expected:
                writer.writeAnnotation(onset, duration, stage)
        finally:
            try:
                writer.close()
            except Exception as e:
                raise OSError(str(e)) from None
        _verify(tmp, expected)

    expected = [(onset, duration, LABELS[stage]) for onset, duration, stage in hyp.segments()]
    origins = suggestion_origins(decisions or [])
    write_atomically(path, write_to)


def _origins_short(origins: dict[str, int]) -> str:
    """``suggested:YASA_12,model_3`` (EDF+ keeps ~40 ASCII characters here, no spaces)."""
    stager = sum(n for o, n in origins.items() if not o.startswith("model:"))
    model = sum(n for o, n in origins.items() if o.startswith("model:"))
    parts = [f"YASA_{stager}" if stager else "", f"model_{model}" if model else ""]
    return "suggested:" + ",".join(p for p in parts if p)


def _verify(tmp: Path, expected: list[tuple[float, float, str]]) -> None:
    """pyedflib does not report failed writes (a full disk gives a short file and no error):
    read the file back before it replaces anything."""
    try:
        found = read_edf_annotations(tmp)
    except HypnogramFormatError as e:
        raise OSError(f"the EDF+ file came out unreadable ({e.problem}); is the disk full?") from None
    same = found.complete and len(found.annotations) == len(expected) and all(
        abs(a[0] - b[0]) < 1e-3 and a[1] is not None and abs(a[1] - b[1]) < 1e-3 and a[2] == b[2]
        for a, b in zip(found.annotations, expected))
    if not same:
        raise OSError("the EDF+ file came out incomplete; is the disk full?")


def read(path: Path) -> FileScoring:
    check_readable(path)
    found = read_edf_annotations(path)
    periods = []
    skipped: list[str] = []
    for n, (onset, duration, text) in enumerate(found.annotations, start=1):
        try:
            stage = parse_stage(text)
        except ValueError:
            if text.lower().replace("_", " ").startswith("sleep stage"):
                raise HypnogramFormatError(
                    path, f"annotation {n} at {onset:g} s: unknown sleep stage {text[:40]!r}") from None
            skipped.append(text)
            continue
        periods.append((onset, duration, stage))
    if not periods:
        raise HypnogramFormatError(
            path, f"no sleep-stage annotations (it has {len(found.annotations)} other annotation(s))")
    notes = []
    if skipped:
        notes.append(f"skipped {len(skipped)} annotation(s) that are not sleep stages "
                     f"(such as {skipped[0][:40]!r})")
    if found.malformed:
        notes.append(f"skipped {found.malformed} malformed annotation list(s)")
    start = None if found.start == UNKNOWN_START else found.start
    return FileScoring(periods, start=start, warnings=notes)


def sniff(head: bytes) -> bool:
    return head[:8] in (b"0       ", b"\xffBIOSEMI")
