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


def format_for(path: str | Path, selected_filter: str = "") -> str:
    """Format from the chosen file filter, else from the file suffix (default csv)."""
    known = export_formats()
    for name, _, desc in known:
        if selected_filter and selected_filter.startswith(desc + " ("):
            return name
    suffix = Path(path).suffix.lower()
    for name, suffixes, _ in known:
        if suffix in suffixes:
            return name
    return DEFAULT_FORMAT


def export_session(session: ReviewSession, fmt: str, path: str | Path) -> Path:
    """Write the session's hypnogram; raises an InputError subclass (one line) on failure."""
    if Path(path).resolve() == Path(session.recording.path).resolve():
        raise HypnogramFormatError(path, "is the open recording; choose another file name")
    return Path(export_study(session.study, fmt, path, scorer=session.scorer))
