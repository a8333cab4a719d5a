"""DREAMS excerpts: the text files of the DREAMS Sleep Spindles database, read and turned into a
temporary EDF+ that the rest of the workstation reads unchanged. No Qt.

The DREAMS Sleep Spindles database (University of Mons, TCTS lab; Devuyst et al.) ships each
excerpt as two text files:

* ``excerptN.txt``: the first line is the channel name in brackets (``[C3-A1]``, ``[CZ-A1]``),
  then one sample per line in microvolts. The sampling rate is not in the file: it is taken from
  ``KNOWN_RATES`` (keyed by file name), else it must be given (``rate=``, ``--rate``).
* ``Hypnogram_excerptN.txt``: the first line is ``[Hypnogram]``, then one Rechtschaffen & Kales
  label per 5 s: 5 wake, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4, -1/-2/-3 unscored or movement.

``read_hypnogram`` lays the R&K labels onto the 30-s grid (``RK_TO_STAGE``, ``epoch_stage``):
each epoch takes the stage most of its six 5-s labels map to (S3 and S4 both count as N3;
unscored and movement count as unscored). A tie for the most labels (3 + 3, 2 + 2 + 2) gives an
unscored epoch: deterministic, and it never decides a stage the scorer did not. A trailing run of
fewer than six labels (a partial epoch) is dropped, as the recording's partial last epoch is.

``temporary_edf`` writes the signal as a one-channel EDF+ in a temporary folder (outside any
repository, deleted on exit), labelled ``EEG <channel>`` so ``auto_montage`` puts C3-A1 / Cz-A1 in
the central EEG role (C4-M1). The DREAMS licence (CC BY-NC-ND) allows evaluation only and no
distributed derivatives: never keep the converted file.

Bad input raises ``RecordingError`` (signal files) or ``HypnogramFormatError`` (hypnograms),
both ``InputError``: one line naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyedflib

from ...errors import HypnogramFormatError, RecordingError
from ..base.stages import Stage

# Sampling rate (Hz) of the DREAMS Sleep Spindles excerpts, by file name (the database's
# description; the files do not say). Excerpts 5-8 are held out of this project: not listed.
KNOWN_RATES: dict[str, float] = {
    "excerpt1.txt": 100.0,
    "excerpt2.txt": 200.0,
    "excerpt3.txt": 50.0,
    "excerpt4.txt": 200.0,
}
HYPNOGRAM_HEADER = "[Hypnogram]"
HYPNOGRAM_PREFIX = "Hypnogram_"
LABEL_SECONDS = 5.0                  # one R&K label per 5 s
LABELS_PER_EPOCH = 6                 # six labels per 30-s epoch
# R&K label -> AASM stage (S3 and S4 are N3; unscored and movement time are unscored).
RK_TO_STAGE: dict[int, Stage] = {
    5: Stage.W, 4: Stage.R, 3: Stage.N1, 2: Stage.N2, 1: Stage.N3, 0: Stage.N3,
    -1: Stage.UNSCORED, -2: Stage.UNSCORED, -3: Stage.UNSCORED,
}
EDF_START = datetime(2000, 1, 1, 0, 0, 0)   # the excerpts carry no date: a fixed, neutral one
EDF_MAX_UV = 3276.7                         # 16-bit EDF at 0.1 uV resolution; beyond: 24-bit BDF+
_BRACKETED = re.compile(r"^\[([^\[\]]+)\]$")
_MODALITY = re.compile(r"^(EEG|EOG|EMG)\b", re.I)


@dataclass(frozen=True)
class DreamsSignal:
    """One excerpt's samples.

    Attributes
    ----------
    path : Path
        The text file read.
    channel : str
        The channel name from the first line, as written (``"C3-A1"``, ``"CZ-A1"``).
    rate : float
        Samples per second.
    samples : numpy.ndarray
        float64 microvolts, one per line of the file after the first.
    """

    path: Path
    channel: str
    rate: float
    samples: np.ndarray

    @property
    def duration_s(self) -> float:
        """Seconds of signal."""
        return self.samples.size / self.rate

    @property
    def edf_label(self) -> str:
        """The label the temporary EDF gives the channel: ``"EEG "`` plus the DREAMS name."""
        return self.channel if _MODALITY.match(self.channel) else f"EEG {self.channel}"


# ------------------------------------------------------------------------------- reading
def _read_lines(path: Path, error) -> list[str]:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise error(path, "no such file") from None
    except IsADirectoryError:
        raise error(path, "is a folder, not a DREAMS text file") from None
    except UnicodeDecodeError:
        raise error(path, "not a DREAMS text file (not plain ASCII text)") from None
    except OSError as exc:
        raise error(path, f"cannot be read ({exc.strerror or exc})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise error(path, "is empty")
    return lines


def _header(first: str) -> str | None:
    found = _BRACKETED.match(first.strip())
    return found.group(1).strip() if found else None


def _numbers(path: Path, lines: Sequence[str], error, what: str) -> np.ndarray:
    """Lines 2.. as float64; the first bad line named (1-based, as an editor counts)."""
    try:
        values = np.asarray(lines, dtype=np.float64)
    except ValueError:
        values = None
    if values is not None and np.isfinite(values).all():
        return values
    for i, line in enumerate(lines):
        try:
            ok = math.isfinite(float(line))
        except ValueError:
            ok = False
        if not ok:
            shown = line.strip()
            shown = "an empty line" if not shown else repr(shown[:40])
            raise error(path, f"line {i + 2}: {shown} is not {what}")
    raise AssertionError("unreachable")  # pragma: no cover


def is_signal_file(path: str | Path) -> bool:
    """Whether ``path`` looks like a DREAMS excerpt signal file (``.txt``, bracketed first line,
    not a hypnogram). Reads the first line only; False for anything unreadable.

    Parameters
    ----------
    path : str or Path
        A file name.

    Returns
    -------
    bool
    """
    path = Path(path)
    if path.suffix.lower() != ".txt" or not path.is_file():
        return False
    first = _first_line(path)
    return first is not None and _BRACKETED.match(first) is not None and first != HYPNOGRAM_HEADER


def is_hypnogram_file(path: str | Path) -> bool:
    """Whether ``path`` is a DREAMS hypnogram (first line ``[Hypnogram]``). Reads one line.

    Parameters
    ----------
    path : str or Path
        A file name.

    Returns
    -------
    bool
    """
    path = Path(path)
    return path.is_file() and _first_line(path) == HYPNOGRAM_HEADER


def _first_line(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return None
    try:
        return head.decode("ascii").splitlines()[0].strip() if head else None
    except (UnicodeDecodeError, IndexError):
        return None


def known_rate(path: str | Path) -> float | None:
    """The sampling rate ``KNOWN_RATES`` lists for this file name (case-insensitive), or None.

    Parameters
    ----------
    path : str or Path
        The signal file; only its name is used.

    Returns
    -------
    float or None
    """
    return KNOWN_RATES.get(Path(path).name.lower())


def resolve_rate(path: str | Path, rate: float | None = None) -> float:
    """The sampling rate of a DREAMS signal file: ``KNOWN_RATES`` by file name, else ``rate``.

    Parameters
    ----------
    path : str or Path
        The signal file.
    rate : float, optional
        The rate the caller knows (``--rate``). Needed for files not in ``KNOWN_RATES``; for a
        listed file it must agree with the table.

    Returns
    -------
    float
        Samples per second (a positive whole number).

    Raises
    ------
    RecordingError
        Neither the table nor ``rate`` gives the rate, ``rate`` contradicts the table, or it is
        not a positive whole number of Hz.
    """
    path = Path(path)
    table = known_rate(path)
    if rate is not None:
        rate = float(rate)
        if not math.isfinite(rate) or rate <= 0 or rate != round(rate):
            raise RecordingError(path, f"sampling rate {rate:g} Hz: give a positive whole number of Hz")
        if table is not None and rate != table:
            raise RecordingError(path, f"the DREAMS rate table says {path.name} is sampled at "
                                       f"{table:g} Hz, not {rate:g} Hz")
        return rate
    if table is None:
        raise RecordingError(path, "sampling rate unknown: the file does not say and it is not a "
                                   f"known DREAMS excerpt ({', '.join(KNOWN_RATES)}); give --rate HZ")
    return table


def read_signal(path: str | Path, rate: float | None = None) -> DreamsSignal:
    """Read a DREAMS excerpt signal file.

    Parameters
    ----------
    path : str or Path
        ``excerptN.txt``: ``[CHANNEL]`` on the first line, then one sample per line in microvolts.
    rate : float, optional
        Sampling rate in Hz for a file not in ``KNOWN_RATES`` (see ``resolve_rate``).

    Returns
    -------
    DreamsSignal
        Channel name, rate and samples (float64 microvolts).

    Raises
    ------
    RecordingError
        Missing or unreadable file, empty file, a first line that is no bracketed channel name
        (or is ``[Hypnogram]``), a line that is not a finite number, no samples, or an unknown rate.
    """
    path = Path(path)
    lines = _read_lines(path, RecordingError)
    channel = _header(lines[0])
    if channel is None or lines[0].strip() == HYPNOGRAM_HEADER:
        found = lines[0].strip()[:40]
        what = ("is a DREAMS hypnogram, not a signal" if found == HYPNOGRAM_HEADER else
                f"first line must be the channel name in brackets, e.g. [C3-A1]; found {found!r}")
        raise RecordingError(path, what)
    fs = resolve_rate(path, rate)
    samples = _numbers(path, lines[1:], RecordingError, "a sample in microvolts")
    if samples.size == 0:
        raise RecordingError(path, f"no samples after the channel name [{channel}]")
    return DreamsSignal(path=path, channel=channel, rate=fs, samples=samples)


def epoch_stage(labels: Sequence[int]) -> Stage:
    """The AASM stage of one 30-s epoch from its six R&K labels.

    Parameters
    ----------
    labels : sequence of int
        The epoch's R&K labels (keys of ``RK_TO_STAGE``).

    Returns
    -------
    Stage
        The stage most labels map to (S3 and S4 both N3; unscored/movement count as unscored);
        ``Stage.UNSCORED`` when two or more stages tie for the most labels.
    """
    counts = Counter(RK_TO_STAGE[int(v)] for v in labels).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return Stage.UNSCORED
    return counts[0][0]


def read_hypnogram(path: str | Path) -> list[Stage]:
    """Read a DREAMS hypnogram onto the 30-s epoch grid (epoch 0 at the excerpt's start).

    Parameters
    ----------
    path : str or Path
        ``Hypnogram_excerptN.txt``: ``[Hypnogram]``, then one R&K label per 5 s.

    Returns
    -------
    list of Stage
        One stage per whole 30-s epoch (``epoch_stage`` of its six labels); a trailing partial
        epoch is dropped.

    Raises
    ------
    HypnogramFormatError
        Missing, unreadable or empty file, a first line other than ``[Hypnogram]``, a label that
        is not an R&K label (5, 4, 3, 2, 1, 0, -1, -2, -3), or fewer than six labels.
    """
    path = Path(path)
    lines = _read_lines(path, HypnogramFormatError)
    if lines[0].strip() != HYPNOGRAM_HEADER:
        raise HypnogramFormatError(path, f"first line must be {HYPNOGRAM_HEADER}; "
                                         f"found {lines[0].strip()[:40]!r}")
    labels = []
    for i, line in enumerate(lines[1:]):
        text = line.strip()
        try:
            value = int(text)
        except ValueError:
            value = None
        if value not in RK_TO_STAGE:
            shown = "an empty line" if not text else repr(text[:40])
            raise HypnogramFormatError(path, f"line {i + 2}: {shown} is not an R&K label "
                                             "(5 W, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4, -1/-2/-3 unscored)")
        labels.append(value)
    n = len(labels) // LABELS_PER_EPOCH
    if n == 0:
        raise HypnogramFormatError(path, f"{len(labels)} labels of 5 s: not one whole 30-s epoch")
    return [epoch_stage(labels[k * LABELS_PER_EPOCH:(k + 1) * LABELS_PER_EPOCH]) for k in range(n)]


def hypnogram_for(signal_path: str | Path) -> Path:
    """The hypnogram file the database pairs with a signal file (``Hypnogram_<name>``).

    Parameters
    ----------
    signal_path : str or Path
        ``.../excerptN.txt``.

    Returns
    -------
    Path
        ``.../Hypnogram_excerptN.txt`` (which may not exist).
    """
    p = Path(signal_path)
    return p.with_name(HYPNOGRAM_PREFIX + p.name)


# ------------------------------------------------------------------------------- EDF+
def write_edf(signal: DreamsSignal, path: str | Path) -> Path:
    """Write ``signal`` as a one-channel EDF+ (BDF+ when it exceeds +-3276.7 uV).

    The physical range is symmetric, +-the largest absolute sample rounded up to 0.1 uV (at
    least 1 uV), over digital +-32767: 0.1 uV resolution or better. A signal beyond +-3276.7 uV
    is written as 24-bit BDF+ (digital +-8388607) to keep that resolution. Whole data records of
    1 s: a trailing partial second is left out. The header records the source file's name and
    the start of its SHA-256 (so the study's recording fingerprint follows the source).

    Parameters
    ----------
    signal : DreamsSignal
        From ``read_signal``.
    path : str or Path
        The file to write (a temporary location: see ``temporary_edf``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    RecordingError
        Less than one second of signal, or a channel name too long for an EDF label.
    """
    path = Path(path)
    fs = int(signal.rate)
    n = (signal.samples.size // fs) * fs
    if n == 0:
        raise RecordingError(signal.path, f"{signal.samples.size} samples at {fs} Hz: "
                                          "less than one second of signal")
    label = signal.edf_label
    if len(label) > 16:
        raise RecordingError(signal.path, f"channel name [{signal.channel}] is longer than an "
                                          "EDF label allows (16 characters with 'EEG ')")
    x = signal.samples[:n]
    peak = max(math.ceil(float(np.abs(x).max()) * 10.0) / 10.0, 1.0)
    bdf = peak > EDF_MAX_UV
    digital = 8388607 if bdf else 32767
    file_type = pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    digest = hashlib.sha256(signal.samples.tobytes()).hexdigest()[:12]
    writer = pyedflib.EdfWriter(str(path), 1, file_type=file_type)
    try:
        writer.setSignalHeaders([{"label": label, "dimension": "uV", "sample_frequency": fs,
                                  "physical_min": -peak, "physical_max": peak,
                                  "digital_min": -digital, "digital_max": digital,
                                  "transducer": "", "prefilter": ""}])
        writer.setStartdatetime(EDF_START)
        writer.setPatientCode("DREAMS")
        writer.setAdmincode(digest)
        writer.setEquipment(signal.path.name[:30].replace(" ", "_"))
        writer.writeSamples([np.ascontiguousarray(x, dtype=np.float64)])
    finally:
        writer.close()
    return path


@contextlib.contextmanager
def temporary_edf(signal: DreamsSignal | str | Path, rate: float | None = None) -> Iterator[Path]:
    """The excerpt as an EDF+ in a new temporary folder (the system's temp area), deleted with
    the folder when the block ends.

    Parameters
    ----------
    signal : DreamsSignal, str or Path
        A signal read by ``read_signal``, or a DREAMS signal file to read.
    rate : float, optional
        Sampling rate for a file not in ``KNOWN_RATES`` (only when ``signal`` is a path).

    Yields
    ------
    Path
        ``<tmp>/<stem>.edf``, e.g. ``excerpt1.edf``.

    Raises
    ------
    RecordingError
        As ``read_signal`` and ``write_edf``.
    """
    if not isinstance(signal, DreamsSignal):
        signal = read_signal(signal, rate)
    with tempfile.TemporaryDirectory(prefix="sleepvlm-dreams-") as tmp:
        yield write_edf(signal, Path(tmp) / f"{signal.path.stem}.edf")
