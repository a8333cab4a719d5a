"""Reading stage tables (tab- or comma-separated): one row per epoch or per scored period."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ....errors import HypnogramFormatError
from ...base.stages import EPOCH_SECONDS, Stage
from ._common import FileScoring, Period, number_of, stage_of

ONSET_COLUMNS = ("onset", "onset_s", "onset_sec", "onset_seconds", "start", "start_s", "time_s")
DURATION_COLUMNS = ("duration", "duration_s", "duration_sec", "duration_seconds")
EPOCH_COLUMNS = ("epoch", "epoch_no", "epoch_number", "epoch_index")
STAGE_COLUMNS = ("stage", "sleep_stage", "sleepstage", "stage_label", "hypnogram", "trial_type",
                 "value", "description", "annotation", "event")
MISSING = ("n/a", "na", "")  # BIDS writes n/a for a missing value


def read_table(path: Path, text: str, delimiter: str, *, what: str) -> FileScoring:
    """Periods from a table whose first non-comment row names its columns.

    The onset comes from an onset column (seconds), else from an epoch-number column (1-based,
    or 0-based when some row has epoch 0), else from the row's position. A duration column
    makes a row a period of that length; without one each row is one epoch.
    """
    rows = [(n, cells) for n, cells in _rows(path, text, delimiter)]
    if not rows:
        raise HypnogramFormatError(path, f"no rows: not a {what}")
    header_line, header = rows[0]
    names = [c.strip().lower().replace(" ", "_") for c in header]
    stage_col = _find(names, STAGE_COLUMNS)
    if stage_col is None:
        if len(header) == 1:
            raise HypnogramFormatError(
                path, f"line {header_line}: no {_delimiter_name(delimiter)} found: not a {what}")
        raise HypnogramFormatError(
            path, f"line {header_line}: header names no stage column "
                  f"(expected one of: {', '.join(STAGE_COLUMNS[:2])}); not a {what}")
    onset_col = _find(names, ONSET_COLUMNS)
    duration_col = _find(names, DURATION_COLUMNS)
    epoch_col = _find(names, EPOCH_COLUMNS)
    body = rows[1:]
    if not body:
        raise HypnogramFormatError(path, "has a header but no stages")

    zero_based = False
    if onset_col is None and epoch_col is not None:
        zero_based = any(_cell(cells, epoch_col).strip() in ("0", "0.0") for _, cells in body)

    needed = max(c for c in (stage_col, onset_col, duration_col, epoch_col) if c is not None)
    periods: list[Period] = []
    for position, (line, cells) in enumerate(body):
        where = f"line {line}"
        if len(cells) <= needed:
            raise HypnogramFormatError(
                path, f"{where}: {len(cells)} column(s) where the header has {len(header)}")
        label = _cell(cells, stage_col)
        stage = Stage.UNSCORED if label.strip().lower() in ("n/a",) else stage_of(path, label, where)
        if onset_col is not None:
            onset = number_of(path, _cell(cells, onset_col), where, "onset")
        elif epoch_col is not None:
            number = number_of(path, _cell(cells, epoch_col), where, "epoch number")
            if number != int(number) or number < 0:
                raise HypnogramFormatError(path, f"{where}: epoch number {number:g} is not a whole number")
            onset = (number if zero_based else number - 1) * EPOCH_SECONDS
        else:
            onset = position * EPOCH_SECONDS
        duration: float | None = None
        if duration_col is not None and _cell(cells, duration_col).strip().lower() not in MISSING:
            duration = number_of(path, _cell(cells, duration_col), where, "duration")
            if duration < 0:
                raise HypnogramFormatError(path, f"{where}: negative duration {duration:g}")
        elif duration_col is None:
            duration = EPOCH_SECONDS
        periods.append((onset, duration, stage))
    return FileScoring(periods)


def _rows(path: Path, text: str, delimiter: str):
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if cells[0].lstrip().startswith("#"):
                continue
            yield line, cells
    except csv.Error as e:
        raise HypnogramFormatError(path, f"line {reader.line_num}: {e}") from None


def _find(names: list[str], candidates: tuple[str, ...]) -> int | None:
    for candidate in candidates:
        if candidate in names:
            return names.index(candidate)
    return None


def _cell(cells: list[str], index: int) -> str:
    return cells[index] if index < len(cells) else ""


def _delimiter_name(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon"}.get(delimiter, repr(delimiter))
