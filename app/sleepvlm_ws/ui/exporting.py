"""File ▸ Export hypnogram: which formats exist and how the window calls the core exporter.

Formats come from ``sleepvlm_ws.core.formats`` (FORMATS, DESCRIPTIONS, SUFFIXES). Exporting
goes through ``core.export.export_study`` (which also audits the export) or, failing that,
``core.formats.export_hypnogram``; if neither is there the user gets a one-line error.
"""

from __future__ import annotations

from pathlib import Path

from ..core.session import ScoringSession
from ..errors import HypnogramFormatError

DEFAULT_FORMAT = "csv"


def export_formats() -> list[tuple[str, tuple[str, ...], str]]:
    """``(name, suffixes, description)`` of every hypnogram writer; [] if none is installed."""
    try:
        from ..core import formats
        return [(name, tuple(formats.SUFFIXES[name]), formats.DESCRIPTIONS[name])
                for name in formats.FORMATS]
    except (ImportError, AttributeError, KeyError):
        return []


def export_filters() -> list[str]:
    """File-dialog filters, one per format, e.g. ``"CSV table (*.csv)"``."""
    return [f"{desc} ({' '.join('*' + s for s in suffixes)})"
            for _, suffixes, desc in export_formats()]


def format_for(path: str | Path, selected_filter: str = "") -> str:
    """Format from the chosen file filter, else from the file suffix (default csv)."""
    formats = export_formats()
    for name, _, desc in formats:
        if selected_filter and selected_filter.startswith(desc + " ("):
            return name
    suffix = Path(path).suffix.lower()
    for name, suffixes, _ in formats:
        if suffix in suffixes:
            return name
    return DEFAULT_FORMAT


def export_session(session: ScoringSession, fmt: str, path: str | Path) -> Path:
    """Write the session's hypnogram; raises an InputError subclass (one line) on failure."""
    if Path(path).resolve() == Path(session.recording.path).resolve():
        raise HypnogramFormatError(path, "is the open recording; choose another file name")
    try:
        from ..core.export import export_study
    except ImportError:
        export_study = None
    if export_study is not None:
        return Path(export_study(session.study, fmt, path, scorer=session.scorer))
    try:
        from ..core.formats import export_hypnogram
        from ..core.hypnogram import Hypnogram
    except ImportError:
        raise HypnogramFormatError(path, "export is not available in this build "
                                         "(sleepvlm_ws.core.formats.export_hypnogram missing)")
    hyp = Hypnogram(stages=session.stages(), start=session.recording.start)
    return Path(export_hypnogram(hyp, fmt, path))
