"""A second opinion on every epoch from YASA's pretrained sleep stager (no Qt).

YASA (Vallat & Walker 2021) stages a night from one central EEG lead, optionally with an EOG
and a chin EMG lead, using a LightGBM classifier over spectral and time-domain features. Here
it is an independent check on the vision-language model: where the two disagree, or YASA is
unsure, the epoch goes into the technologist's review queue (``core.review.review_queue``). Its
stages are never decisions and never exported.

What is fed to YASA:

* EEG: the montage's ``C4-M1`` role (which ``auto_montage`` fills with C4-M1, else C3-M2, else
  another central lead); EOG: the ``LOC`` role, else ``ROC``; EMG: the ``CHIN`` role. A lead
  sampled below ``MIN_FS`` (80 Hz, YASA's own floor) is not used; without a usable central EEG
  there is no second opinion.
* Each lead is read over exactly the recording's whole 30-s epochs (samples from second 0 to
  ``n_epochs * 30``) and resampled here to 100 Hz (what YASA resamples to anyway), so YASA's
  epoch ``k`` is the recording's epoch ``k`` and leads of different rates line up.
* Gaps (EDF+D, read as NaN) are filled with the lead's median before YASA sees them (it cannot
  take NaN); epochs where more than half of the EEG is gap get no second opinion.

The result is stored in the study's ``second_opinions`` table (schema v3): per (epoch, method)
the stage and the five probabilities (W, N1, N2, N3, R; they sum to 1). ``method`` names YASA's
version and the classifier used. Storing a run writes one audit event (``second_opinion_run``).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from ...errors import InputError
from ..base.stages import EPOCH_SECONDS, SLEEP_STAGES, Stage
from ..signals.montage import Derivation, Montage, read_role
from ..study.audit import utc_now_iso

MIN_FS = 80.0                 # YASA refuses EEG sampled at 80 Hz or below; it needs >= 80 Hz
YASA_FS = 100                 # YASA works at 100 Hz
MIN_EPOCHS = 10               # 5 minutes: YASA's minimum for reliable results
GAP_EPOCH_SHARE = 0.5         # an epoch more than half gap on the EEG gets no second opinion
SECOND_OPINION_RUN = "second_opinion_run"   # audit event kind
PROBABILITY_COLUMNS = ("p_w", "p_n1", "p_n2", "p_n3", "p_r")   # in SLEEP_STAGES order

_YASA_LABELS = {"W": Stage.W, "WAKE": Stage.W, "N1": Stage.N1, "N2": Stage.N2, "N3": Stage.N3,
                "R": Stage.R, "REM": Stage.R}


class SecondOpinionUnavailable(InputError):
    """The second opinion cannot run on this recording; ``str()`` is the line the UI shows."""

    def __init__(self, recording_path: str | Path, why: str):
        super().__init__(None, f"second opinion unavailable: {why} in {Path(recording_path).name}")
        self.recording_path = Path(recording_path)


@dataclass(frozen=True)
class SecondOpinion:
    """The stager's answer for one epoch: a stage and the probability of each sleep stage."""

    epoch: int
    method: str
    stage: Stage
    probabilities: dict[Stage, float]

    @property
    def confidence(self) -> float:
        """The highest of the five probabilities (how sure the stager is)."""
        return max(self.probabilities.values())


@dataclass
class SecondOpinionResult:
    """One run's answers, not yet stored. ``channels``: role kind (eeg/eog/emg) -> derivation
    used; ``left_out``: leads present in the montage but not used, and why."""

    method: str
    n_epochs: int
    channels: dict[str, str]
    opinions: list[SecondOpinion] = field(default_factory=list)
    gap_epochs: list[int] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------- compute
def compute(recording, montage: Montage) -> SecondOpinionResult:
    """Run YASA on the recording's leads (see the module text). Raises
    ``SecondOpinionUnavailable`` when it cannot run; reads nothing but samples."""
    n_epochs = int(recording.n_epochs)
    if n_epochs < MIN_EPOCHS:
        raise SecondOpinionUnavailable(recording.path, "the recording is shorter than 5 minutes")
    eeg = montage.roles.get("C4-M1")
    if eeg is None or _fs(recording, eeg) < MIN_FS:
        raise SecondOpinionUnavailable(
            recording.path, f"no central EEG channel ≥ {MIN_FS:g} Hz")
    picks: dict[str, Derivation] = {"eeg": eeg}
    left_out: dict[str, str] = {}
    for kind, roles in (("eog", ("LOC", "ROC")), ("emg", ("CHIN",))):
        for role in roles:
            d = montage.roles.get(role)
            if d is None:
                continue
            if _fs(recording, d) < MIN_FS:
                left_out[role] = f"{d.name} sampled below {MIN_FS:g} Hz"
                continue
            picks[kind] = d
            break
    stop_s = n_epochs * EPOCH_SECONDS
    n = int(round(stop_s * YASA_FS))
    data, gaps = {}, None
    for kind, derivation in picks.items():
        x, fs = read_role(recording, derivation, 0.0, stop_s)
        lead, gap = _to_100_hz(x, fs, n)
        if kind == "eeg":
            gaps = gap
        data[kind] = lead
    gap_share = gaps.reshape(n_epochs, -1).mean(axis=1)
    if (gap_share <= GAP_EPOCH_SHARE).sum() < MIN_EPOCHS:
        raise SecondOpinionUnavailable(recording.path, "less than 5 minutes of central EEG")
    stages, proba, method = _run_yasa(data, recording.path)
    if len(stages) != n_epochs:  # cannot happen: the samples span exactly n_epochs epochs
        raise RuntimeError(f"YASA returned {len(stages)} epochs for {n_epochs}")
    gap_epochs = [int(e) for e in np.flatnonzero(gap_share > GAP_EPOCH_SHARE)]
    skip = set(gap_epochs)
    opinions = [SecondOpinion(e, method, stages[e], proba[e]) for e in range(n_epochs)
                if e not in skip]
    return SecondOpinionResult(method=method, n_epochs=n_epochs,
                               channels={k: d.name for k, d in picks.items()},
                               opinions=opinions, gap_epochs=gap_epochs, left_out=left_out)


def _fs(recording, derivation: Derivation) -> float:
    return float(recording.channel(derivation.positive).fs)


def _to_100_hz(x: np.ndarray, fs: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(lead at 100 Hz in microvolts, no NaN; gap mask at 100 Hz), both exactly ``n`` long."""
    x = np.asarray(x, dtype=np.float64)
    gap = ~np.isfinite(x)
    fill = float(np.median(x[~gap])) if (~gap).any() else 0.0
    x = np.where(gap, fill, x)
    ratio = Fraction(YASA_FS / fs).limit_denominator(1000)
    if ratio != 1:
        x = resample_poly(x, ratio.numerator, ratio.denominator)
    # gap mask on the 100-Hz grid: the source sample each new sample falls on
    src = np.minimum((np.arange(n) * fs / YASA_FS).astype(np.int64), max(gap.size - 1, 0))
    gap_100 = gap[src] if gap.size else np.ones(n, dtype=bool)
    if x.size < n:
        x = np.concatenate([x, np.full(n - x.size, fill)])
    return x[:n], gap_100


def _run_yasa(data: dict[str, np.ndarray], path: Path):
    """YASA's stager on 100-Hz leads in microvolts: (stage per epoch, probabilities, method)."""
    # late: mne and yasa (numba, LightGBM) take seconds to import and are needed only here
    import mne
    import yasa

    names = {"eeg": "EEG", "eog": "EOG", "emg": "EMG"}
    kinds = [k for k in ("eeg", "eog", "emg") if k in data]
    info = mne.create_info([names[k] for k in kinds], YASA_FS, ch_types=kinds, verbose=False)
    raw = mne.io.RawArray(np.vstack([data[k] for k in kinds]) * 1e-6, info, verbose=False)
    yasa_log = logging.getLogger("yasa")
    level = yasa_log.level
    yasa_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # YASA's classifiers were pickled with an older scikit-learn (a LabelEncoder only)
            warnings.filterwarnings("ignore", message=".*unpickle estimator.*")
            staging = yasa.SleepStaging(raw, eeg_name="EEG",
                                        eog_name="EOG" if "eog" in data else None,
                                        emg_name="EMG" if "emg" in data else None)
            hypnogram = staging.predict()
    except (AssertionError, ValueError) as exc:
        raise SecondOpinionUnavailable(path, f"YASA refused the signals ({exc})") from None
    finally:
        yasa_log.setLevel(level)
    proba = hypnogram.proba
    columns = {c: _YASA_LABELS[str(c).upper()] for c in proba.columns}
    values = proba.to_numpy(dtype=np.float64)
    values = values / values.sum(axis=1, keepdims=True)
    probabilities = []
    for row in values:
        by_stage = {s: 0.0 for s in SLEEP_STAGES}
        for col, p in zip(proba.columns, row):
            by_stage[columns[col]] += float(p)
        probabilities.append(by_stage)
    stages = [_YASA_LABELS[str(v).upper()] for v in np.asarray(hypnogram.hypno)]
    classifier = "clf_" + "+".join(kinds)
    method = f"yasa-{yasa.__version__}/{classifier}"
    return stages, probabilities, method


# ------------------------------------------------------------------------- study file
def store(study, result: SecondOpinionResult, actor: str) -> int:
    """Store a run's answers (one transaction, with one ``second_opinion_run`` audit event).
    Epochs already holding this method's answer keep it. Returns how many rows were added."""
    if result.n_epochs != study.n_epochs:
        raise ValueError(f"the second opinion covers {result.n_epochs} epochs, the study "
                         f"{study.n_epochs}")
    created = utc_now_iso()
    channels = json.dumps(result.channels, sort_keys=True)
    rows = [(o.epoch, o.method, o.stage.value,
             *(round(o.probabilities[s], 6) for s in SLEEP_STAGES), channels, created)
            for o in result.opinions]
    with study.batch():
        with study.transaction("the second opinion") as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO second_opinions(epoch, method, stage, p_w, p_n1, p_n2, p_n3, p_r, "
                "channels, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(epoch, method) DO NOTHING", rows)
            added = conn.total_changes - before
        study.record_event(SECOND_OPINION_RUN, {
            "method": result.method, "channels": dict(result.channels),
            "epochs_stored": added, "epochs_with_opinion": len(result.opinions),
            "gap_epochs": len(result.gap_epochs), "left_out": dict(result.left_out)}, actor)
    return added


def run(recording, study, actor: str) -> SecondOpinionResult:
    """``compute`` on the study's montage, then ``store``."""
    result = compute(recording, study.montage)
    store(study, result, actor)
    return result


def methods(study) -> list[str]:
    """Methods with stored answers, the most recent first."""
    rows = study.query("SELECT method, MAX(rowid) FROM second_opinions GROUP BY method "
                       "ORDER BY MAX(rowid) DESC")
    return [m for m, _ in rows]


def load(study, method: str | None = None) -> dict[int, SecondOpinion]:
    """epoch -> stored answer of ``method`` (default: the most recent method); {} if none."""
    if method is None:
        found = methods(study)
        if not found:
            return {}
        method = found[0]
    rows = study.query("SELECT epoch, stage, p_w, p_n1, p_n2, p_n3, p_r FROM second_opinions "
                       "WHERE method = ? ORDER BY epoch", (method,))
    return {epoch: SecondOpinion(epoch, method, Stage(stage), dict(zip(SLEEP_STAGES, probs)))
            for epoch, stage, *probs in rows}
