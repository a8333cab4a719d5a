"""Hypnogram import and export in the formats sleep labs use.

``export_hypnogram(hyp, "xml", path)`` writes one file atomically;
``import_hypnogram(path, n_epochs=study.n_epochs)`` reads one onto the study's 30-s epoch grid,
guessing the format from the file name or, failing that, its content. Every problem with a
file is a one-line :class:`~sleepvlm_ws.errors.HypnogramFormatError` naming it.

Formats (one module each): ``tsv`` BIDS events table, ``csv`` spreadsheet table, ``edf`` EDF+
annotations (Sleep-EDF style), ``xml`` NSRR / Compumedics, ``json`` the workstation's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ....errors import HypnogramFormatError
from ...base.hypnogram import Hypnogram
from ...base.stages import EPOCH_SECONDS
from . import bids_tsv, csv_table, edf_plus, json_doc, nsrr_xml
from ._common import check_readable

FORMATS = ("tsv", "csv", "edf", "xml", "json")
_MODULES = {m.NAME: m for m in (bids_tsv, csv_table, edf_plus, nsrr_xml, json_doc)}
assert set(_MODULES) == set(FORMATS)

# For file dialogs: format -> (description, suffixes)
DESCRIPTIONS = {name: _MODULES[name].DESCRIPTION for name in FORMATS}
SUFFIXES = {name: _MODULES[name].SUFFIXES for name in FORMATS}

__all__ = ["FORMATS", "DESCRIPTIONS", "SUFFIXES", "export_hypnogram", "import_hypnogram",
           "guess_format", "Hypnogram", "HypnogramFormatError"]


def guess_format(path: str | Path, head: bytes | None = None) -> str | None:
    """Format named by the file's suffix, else recognised from its first bytes; None if neither."""
    path = Path(path)
    suffix = path.suffix.lower()
    for name in FORMATS:
        if suffix in _MODULES[name].SUFFIXES:
            return name
    if head is None:
        return None
    for name in ("edf", "xml", "json", "tsv", "csv"):
        if _MODULES[name].sniff(head):
            return name
    return None


def export_hypnogram(hyp: Hypnogram, fmt: str | None, path: str | Path, *,
                     decisions: list[dict] | None = None, audit: list[dict] | None = None,
                     meta: dict | None = None) -> Path:
    """Write ``hyp`` as ``fmt`` (None: from the suffix of ``path``) to ``path``, atomically.

    ``decisions`` (the study's decision records) fill the csv's source/scorer columns and, with
    ``audit`` and ``meta``, go into the json document; other formats hold stages only.
    """
    path = Path(path)
    name = _format_name(path, fmt if fmt is not None else guess_format(path))
    if hyp.n_epochs == 0:
        raise HypnogramFormatError(path, "nothing to export: the hypnogram has no epochs")
    _MODULES[name].write(hyp, path, decisions=decisions, audit=audit, meta=meta)
    return path


def import_hypnogram(path: str | Path, *, fmt: str | None = None, n_epochs: int | None = None,
                     epoch_s: float = EPOCH_SECONDS) -> Hypnogram:
    """Read a hypnogram file onto the ``epoch_s`` grid (epoch 0 at the recording start).

    ``n_epochs`` (the study's length) cuts the result or pads it with unscored epochs. Periods
    off the grid go to the epoch containing their start; a later period overrides an earlier
    one. What had to be adjusted is listed in the result's ``warnings``.

    Parameters
    ----------
    path : str or Path
        The hypnogram file.
    fmt : str, optional
        One of ``FORMATS`` (``"bdf"`` and ``"edf+"`` read as ``"edf"``). Default: named by the file's
        suffix, else recognised from its first 512 bytes.
    n_epochs : int, optional
        The study's length in epochs (default: as long as the file's periods reach).
    epoch_s : float
        The epoch length in seconds (default 30).

    Returns
    -------
    Hypnogram

    Raises
    ------
    HypnogramFormatError
        One line naming the file: unreadable, of an unknown format, not valid in its format,
        holding no sleep stages, or with a period that lies absurdly far out.
    """
    path = Path(path)
    if fmt is None:
        fmt = guess_format(path, _head(path))
        if fmt is None:
            raise HypnogramFormatError(
                path, f"cannot tell the hypnogram format (known: {', '.join(FORMATS)})")
    name = _format_name(path, fmt)
    found = _MODULES[name].read(path)
    if not found.periods:
        raise HypnogramFormatError(path, "holds no sleep stages")
    try:
        hyp = Hypnogram.from_segments(found.periods, epoch_s=epoch_s, start=found.start,
                                      n_epochs=n_epochs)
    except ValueError as e:
        raise HypnogramFormatError(path, str(e)) from None
    hyp.warnings[:0] = found.warnings
    return hyp


def _format_name(path: Path, fmt: Any) -> str:
    name = str(fmt).lower().lstrip(".") if fmt is not None else ""
    if name in ("bdf", "edf+"):
        name = "edf"
    if name not in _MODULES:
        if not name:
            raise HypnogramFormatError(
                path, f"cannot tell the format from the file name (known: {', '.join(FORMATS)})")
        raise HypnogramFormatError(path, f"unknown hypnogram format {str(fmt)[:20]!r} "
                                         f"(known: {', '.join(FORMATS)})")
    return name


def _head(path: Path) -> bytes:
    check_readable(path)
    try:
        with open(path, "rb") as f:
            return f.read(512)
    except OSError as e:
        raise HypnogramFormatError(path, f"cannot read: {e.strerror or e}") from None
