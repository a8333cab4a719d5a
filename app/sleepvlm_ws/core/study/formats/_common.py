"""What every hypnogram format shares: reading input safely, writing exports atomically,
turning a file's stage text into a Stage with a one-line error naming the file and row."""

from __future__ import annotations

import dataclasses
import enum
import os
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ....errors import HypnogramFormatError
from ...base.durable import fsync_folder
from ...base.stages import Stage, parse_stage

# Text hypnograms are small (a week of 30-s epochs as CSV is under 2 MB); anything far bigger
# is not a hypnogram, and reading it whole could exhaust memory.
MAX_TEXT_BYTES = 64 * 1024 * 1024

# One scored period as a file states it: (onset s from recording start, duration s or None, stage).
Period = tuple[float, "float | None", Stage]


@dataclass
class FileScoring:
    """What a reader found in a file, before it is laid onto the study's epoch grid."""

    periods: list[Period]
    start: datetime | None = None
    warnings: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


# --- reading ---------------------------------------------------------------------------------
def check_readable(path: Path) -> None:
    """Raise the one-line error a user should see for a path that is no readable file."""
    try:
        if not path.exists():
            raise HypnogramFormatError(path, "file not found")
        if path.is_dir():
            raise HypnogramFormatError(path, "is a folder, not a hypnogram file")
        if path.stat().st_size == 0:
            raise HypnogramFormatError(path, "file is empty")
    except OSError as e:
        raise HypnogramFormatError(path, f"cannot read: {e.strerror or e}") from None


def read_bytes(path: Path, limit: int = MAX_TEXT_BYTES) -> bytes:
    check_readable(path)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise HypnogramFormatError(path, f"cannot read: {e.strerror or e}") from None
    if len(data) > limit:
        raise HypnogramFormatError(
            path, f"file is larger than {limit // (1024 * 1024)} MB; not a hypnogram")
    if not data.strip():
        raise HypnogramFormatError(path, "file is empty")
    return data


def decode_text(path: Path, data: bytes) -> str:
    """Text of a table file: UTF-8 (with or without BOM), else Latin-1; binary is refused."""
    if b"\x00" in data:
        raise HypnogramFormatError(path, "is a binary file, not a text hypnogram")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def stage_of(path: Path, text: object, where: str) -> Stage:
    try:
        return parse_stage(text)
    except ValueError:
        raise HypnogramFormatError(path, f"{where}: unknown sleep stage {str(text)[:40]!r}") from None


def number_of(path: Path, text: str, where: str, what: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise HypnogramFormatError(path, f"{where}: {what} is not a number: {str(text)[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise HypnogramFormatError(path, f"{where}: {what} is not a number: {str(text)[:40]!r}")
    return value


# --- writing ---------------------------------------------------------------------------------
def seconds_text(x: float) -> str:
    """Seconds for a text file: ``30.0``, ``28770.0``, ``12.345``."""
    text = f"{x:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def write_atomically(path: str | Path, write_to: Callable[[Path], None]) -> Path:
    """Write an export so that the final name only ever holds a complete file.

    ``write_to(tmp)`` writes the whole export to a temporary file in the target folder; it is
    then flushed to disk and renamed over ``path`` (a replaced file's permissions are kept). On
    any failure the temporary file is removed and an existing file under ``path`` is left as it
    was; a file-system error (full disk, no permission) becomes a one-line
    ``HypnogramFormatError``, any other error from ``write_to`` is raised as it is.

    Parameters
    ----------
    path : str or Path
        The export's final name; its folder must exist.
    write_to : callable
        ``write_to(tmp)`` writes the export to the path ``tmp``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    HypnogramFormatError
        When ``path`` is a folder, its folder is missing, or the file cannot be written.
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise HypnogramFormatError(path, "cannot write: it is a folder")
    if not folder.exists():
        raise HypnogramFormatError(path, f"cannot write: folder {folder} does not exist")
    if not folder.is_dir():
        raise HypnogramFormatError(path, f"cannot write: {folder} is not a folder")
    mode = _mode_for(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name[:80]}.", suffix=".part")
    except OSError as e:
        raise HypnogramFormatError(path, f"cannot write into {folder}: {e.strerror or e}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_to(tmp)
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        raise HypnogramFormatError(path, f"cannot write: {e.strerror or e}") from None
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_folder(folder)
    return path


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    def write_to(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return write_atomically(path, write_to)


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777  # replacing an export keeps its permissions
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def _remove_quietly(tmp: Path) -> None:
    try:
        tmp.unlink()
    except OSError:
        pass


# --- decisions and other study records --------------------------------------------------------
def as_record(item: Any) -> dict:
    """A decision or audit entry as a plain dict (dicts pass through; dataclasses are expanded)."""
    if isinstance(item, Mapping):
        return dict(item)
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    raise TypeError(f"not a record: {item!r}")


def last_decision_per_epoch(decisions: Iterable[Any]) -> dict[int, dict]:
    """For each epoch, the last decision (in list order) that set its stage."""
    last: dict[int, dict] = {}
    for item in decisions:
        record = as_record(item)
        epoch = record.get("epoch")
        if isinstance(epoch, int):
            last[epoch] = record
    return last


def suggestion_origins(decisions: Iterable[Any]) -> dict[str, int]:
    """How many epochs' current stage is an accepted suggestion's, by where that suggestion's
    stage came from (a decision's ``suggested_by``: the real-trained stager's method, or
    ``model:`` and the model id); {} when none is. An overridden stage is the scorer's own."""
    counts: dict[str, int] = {}
    for record in last_decision_per_epoch(decisions).values():
        origin = record.get("suggested_by")
        if origin and record.get("source") == "ai_accepted":
            counts[str(origin)] = counts.get(str(origin), 0) + 1
    return counts


def origins_text(origins: Mapping[str, int]) -> str:
    """``stages accepted from suggestions: 12 suggested by yasa-0.8.1/clf_eeg, 3 by model:1a2b...``."""
    parts = []
    for origin, n in sorted(origins.items(), key=lambda item: (-item[1], item[0])):
        name = origin if not origin.startswith("model:") else origin[:18]
        parts.append(f"{n} {'suggested by' if not parts else 'by'} {name}")
    return "stages accepted from suggestions: " + ", ".join(parts)


def plain_json(value: Any) -> Any:
    """``json.dumps(default=...)`` hook for what study records hold."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a hypnogram export")
