"""File ▸ Export hypnogram: which formats exist and how the window calls the core exporter.

Formats come from ``sleepvlm_ws.core.study.formats`` (FORMATS, DESCRIPTIONS, SUFFIXES). Exporting
goes through ``core.study.export.export_study``, which also audits the export.
"""

from __future__ import annotations

from pathlib import Path

from ..core.review.session import ReviewSession
from ..core.study import formats
from ..core.study.export import export_study
from ..errors import HypnogramFormatError

DEFAULT_FORMAT = "csv"


def export_formats() -> list[tuple[str, tuple[str, ...], str]]:
    """``(name, suffixes, description)`` of every hypnogram writer."""
    return [(name, tuple(formats.SUFFIXES[name]), formats.DESCRIPTIONS[name])
            for name in formats.FORMATS]


def export_filters() -> list[str]:
    """File-dialog filters, one per format, e.g. ``"CSV table (*.csv)"``."""
    return [f"{desc} ({' '.join('*' + s for s in suffixes)})"
            for _, suffixes, desc in export_formats()]


def export_target(path: str | Path, selected_filter: str = "") -> tuple[Path, str]:
    """Where the export goes and in which format, from what the technologist chose.

    The suffix typed decides, as in the tools technologists know: ``night.xml`` is NSRR XML
    whatever the "Files of type" filter says. A name with no known suffix takes the filter's
    format (default CSV) and that format's suffix.

    Parameters
    ----------
    path : str or Path
        The file name from the save dialog.
    selected_filter : str
        The dialog's "Files of type" filter (``export_filters``), or "".

    Returns
    -------
    (Path, str)
        The file to write and the format name (``formats.FORMATS``).
    """
    known = export_formats()
    path = Path(path)
    for name, suffixes, _ in known:
        if path.suffix.lower() in suffixes:
            return path, name
    fmt = next((name for name, _, desc in known
                if selected_filter and selected_filter.startswith(desc + " (")), DEFAULT_FORMAT)
    return path.with_name(path.name + formats.SUFFIXES[fmt][0]), fmt


def export_session(session: ReviewSession, fmt: str, path: str | Path) -> Path:
    """Write the session's hypnogram; raises an InputError subclass (one line) on failure."""
    if Path(path).resolve() == Path(session.recording.path).resolve():
        raise HypnogramFormatError(path, "is the open recording; choose another file name")
    return Path(export_study(session.study, fmt, path, scorer=session.scorer))
