"""Evaluate a model pack against a scored recording: the figures a model card reports.

``evaluate_recording`` scores a recording with a pack (fast pass, stored in a study file so a
rerun resumes and never repeats work), reads the reference hypnogram onto the same 30-s grid,
and compares:
- the model's stages with the reference (Cohen's kappa, accuracy, macro-F1, per-stage recall,
  confusion matrix: core/trust/agreement.py);
- YASA's pretrained stager on the same epochs, side by side (core/trust/second_opinion.py), or the
  reason it cannot run (no central EEG >= 80 Hz, ...);
- the fused stage (core/trust/fusion.py: the model's and YASA's probabilities pooled by a fixed
  rule) on the epochs where both gave probabilities;
- the stage the workstation offers by default (core/review/suggested_stage.py: YASA's where it
  staged the epoch, else the model's), on every epoch the model answered;
- how many answers parsed without any repair, and how many were flagged;
- the cited rule IDs with the rule IDs the evidence measured on the signals supports for the
  reference stage (core/trust/evidence: the same targets the default model was trained towards).

DREAMS excerpts (``excerptN.txt`` + ``Hypnogram_excerptN.txt``, core/signals/dreams.py) are evaluated
through a temporary EDF+ that is deleted afterwards; the study file for the answers is in the
user data folder as for any recording. ``pooled`` says which recordings each pooled figure
covers and adds the side-by-side comparison on the epochs YASA staged (YASA cannot stage a
recording without a central EEG >= 80 Hz, e.g. DREAMS excerpt 3 at 50 Hz).
No Qt. Bad input raises InputError subclasses (one line).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...errors import InputError
from ...paths import user_data_dir
from ..base.stage_source import STAGER
from ..base.stages import SLEEP_STAGES, Stage
from ..review.suggested_stage import lead_all
from ..signals import dreams
from ..signals.dreams import HYPNOGRAM_PREFIX, hypnogram_for
from ..signals.recording import Recording
from ..study.formats import import_hypnogram
from ..study.study import Study
from ..study.suggestions import FAST, SuggestionStore
from ..trust import second_opinion
from ..trust.agreement import Agreement, NoCommonEpochsError, agreement
from ..trust.evidence.measures import measure_recording
from ..trust.evidence.rules_check import derive_rules
from ..trust.fusion import fused_stage
from .scoring_run import ScoringRun, study_montage

ProgressCallback = Callable[[int, int, "float | None"], None]
HYPNOGRAM_SUFFIXES = (".tsv", ".csv", ".xml", ".json", "-hypnogram.edf")
_SLEEP_EDF = re.compile(r"^(?P<id>[A-Z]{2}\d{4})[A-Z0-9]\d?-PSG\.edf$", re.I)


@dataclass
class EvaluationResult:
    recording: str
    reference: str
    model: str
    n_epochs: int
    model_agreement: Agreement | None
    yasa_agreement: Agreement | None
    yasa_unavailable: str | None
    fused_agreement: Agreement | None = None       # model + YASA pooled (core/trust/fusion.py)
    offered_agreement: Agreement | None = None     # as offered: YASA-led (core/review/suggested_stage.py)
    epochs: list[dict] = field(default_factory=list)
    parse: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    montage: dict = field(default_factory=dict)    # role -> derivation name, filled roles only
    source: dict = field(default_factory=dict)     # DREAMS: format, channel, rate_hz, edf_label

    def to_dict(self, with_epochs: bool = True) -> dict:
        out = {"recording": self.recording, "reference": self.reference, "model": self.model,
               "n_epochs": self.n_epochs,
               "model_agreement": self.model_agreement.to_dict() if self.model_agreement else None,
               "yasa_agreement": self.yasa_agreement.to_dict() if self.yasa_agreement else None,
               "yasa_unavailable": self.yasa_unavailable,
               "fused_agreement": self.fused_agreement.to_dict() if self.fused_agreement else None,
               "offered_agreement": (self.offered_agreement.to_dict() if self.offered_agreement
                                     else None),
               "parse": self.parse, "rules": self.rules,
               "seconds": self.seconds, "montage": self.montage}
        if self.source:
            out["source"] = self.source
        if with_epochs:
            out["epochs"] = self.epochs
        return out


def find_scored_studies(directory: str | Path) -> list[tuple[Path, Path]]:
    """(recording, hypnogram) pairs in ``directory``: Sleep-EDF (``SC4001E0-PSG.edf`` +
    ``SC4001EC-Hypnogram.edf``), MASS (``01-01-0001 PSG.edf`` + ``01-01-0001 Base.edf``),
    ``X.edf`` + ``X.tsv`` / ``.csv`` / ``.xml`` / ``.json`` / ``X-hypnogram.edf``, or DREAMS
    (``excerptN.txt`` + ``Hypnogram_excerptN.txt``; EDF pairs first, then DREAMS pairs).

    Parameters
    ----------
    directory : path
        The folder to look in (not its subfolders).

    Returns
    -------
    list of (Path, Path)
        (recording, its reference hypnogram), in name order.

    Raises
    ------
    InputError
        ``directory`` is not a folder.
    """
    d = Path(directory)
    if not d.is_dir():
        raise InputError(d, "not a folder")
    pairs = []
    for edf in sorted(list(d.glob("*.edf")) + list(d.glob("*.bdf")) + list(d.glob("*.EDF"))):
        stem = edf.stem
        match = _SLEEP_EDF.match(edf.name)
        if match:
            candidates = sorted(d.glob(match["id"] + "*-Hypnogram.edf"))
        elif stem.endswith(" PSG"):
            candidates = [d / (stem[:-4] + " Base.edf")]
        elif stem.lower().endswith(("-hypnogram", " base")):
            continue
        else:
            candidates = [d / f"{stem}{ext}" for ext in HYPNOGRAM_SUFFIXES]
        found = [c for c in candidates if c.is_file()]
        if found:
            pairs.append((edf, found[0]))
    for txt in sorted(d.glob("*.txt")):
        if txt.name.lower().startswith(HYPNOGRAM_PREFIX.lower()):
            continue
        if hypnogram_for(txt).is_file():
            pairs.append((txt, hypnogram_for(txt)))
    return pairs


def is_dreams_recording(path: str | Path) -> bool:
    """Whether ``evaluate_recording`` reads ``path`` as a DREAMS signal.

    Parameters
    ----------
    path : path
        A recording's file.

    Returns
    -------
    bool
        True for a ``.txt`` file.
    """
    return Path(path).suffix.lower() == ".txt"


def read_reference(reference_path: str | Path, n_epochs: int) -> list[Stage]:
    """The reference hypnogram on the 30-s grid, ``n_epochs`` long (cut, or padded unscored):
    a DREAMS hypnogram (``[Hypnogram]`` first, or named ``Hypnogram_*.txt``) through
    core/signals/dreams.py, anything else through core/study/formats (``import_hypnogram``).

    Parameters
    ----------
    reference_path : path
        The expert's hypnogram.
    n_epochs : int
        The recording's epochs.

    Returns
    -------
    list of Stage
        One stage per epoch.

    Raises
    ------
    InputError
        The hypnogram cannot be read (one line naming the file).
    """
    p = Path(reference_path)
    named = p.name.lower().startswith(dreams.HYPNOGRAM_PREFIX.lower()) and p.suffix.lower() == ".txt"
    if named or dreams.is_hypnogram_file(p):
        stages = dreams.read_hypnogram(p)[:n_epochs]
        return stages + [Stage.UNSCORED] * (n_epochs - len(stages))
    return list(import_hypnogram(p, n_epochs=n_epochs).stages)


def _study_path(recording, study_path) -> Path:
    if study_path:
        return Path(study_path)

    folder = user_data_dir() / "evaluations"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{recording.fingerprint()[:16]}.svlm"


def _rule_agreement(evidence, reference: list[Stage], suggestions: dict) -> dict:
    exact = jacc = n = 0
    exact_ok = jacc_ok = n_ok = 0
    for e, s in suggestions.items():
        ref = reference[e] if e < len(reference) else None
        if ref not in SLEEP_STAGES or s.stage not in SLEEP_STAGES:
            continue
        target = set(derive_rules(evidence, e, reference))
        cited = set(s.rules)
        j = 1.0 if not target and not cited else len(target & cited) / len(target | cited)
        n += 1
        exact += target == cited
        jacc += j
        if s.stage is ref:
            n_ok += 1
            exact_ok += target == cited
            jacc_ok += j
    return {"epochs": n, "exact": exact / n if n else None, "jaccard": jacc / n if n else None,
            "epochs_stage_correct": n_ok, "exact_stage_correct": exact_ok / n_ok if n_ok else None,
            "jaccard_stage_correct": jacc_ok / n_ok if n_ok else None}


def evaluate_recording(recording_path: str | Path, reference_path: str | Path, runtime, *,
                       study_path: str | Path | None = None, with_yasa: bool = True,
                       with_rules: bool = True, progress: ProgressCallback | None = None,
                       scorer: str = "evaluation", rate: float | None = None) -> EvaluationResult:
    """Score ``recording_path`` with ``runtime`` (a LocalRuntime or RemoteRuntime) and compare
    with the hypnogram at ``reference_path``.

    A ``.txt`` recording is a DREAMS excerpt (core/signals/dreams.py): ``rate`` (Hz) is needed when its
    name is not in ``dreams.KNOWN_RATES``. It is scored through a temporary EDF+ deleted before
    this returns; the result names the text file and carries ``source`` (channel, rate).

    Parameters
    ----------
    recording_path : path
        The recording (EDF, EDF+, BDF, or a DREAMS ``.txt`` excerpt).
    reference_path : path
        Its expert hypnogram (``read_reference``).
    runtime : LocalRuntime or RemoteRuntime or RemotePool
        The model (``core.model.settings.open_runtime``).
    study_path : path, optional
        The study the answers go into; default: one per recording in the user's evaluations
        folder (a rerun reuses its stored answers).
    with_yasa : bool
        Also stage with YASA and compare (and fuse, and offer as the workstation does).
    with_rules : bool
        Also compare the cited rules with those the evidence and reference imply.
    progress : callable, optional
        ``progress(done, total, eta_s)`` while scoring.
    scorer : str
        The actor the study's audit events name.
    rate : float, optional
        A DREAMS excerpt's sampling rate (Hz) when its name does not give it.

    Returns
    -------
    EvaluationResult
        The agreements (model, YASA, fused, as offered) and the per-epoch stages.

    Raises
    ------
    InputError
        The recording or the reference cannot be read (one line naming the file).
    """
    if is_dreams_recording(recording_path):
        signal = dreams.read_signal(recording_path, rate)
        with dreams.temporary_edf(signal) as edf:
            result = evaluate_recording(edf, reference_path, runtime, study_path=study_path,
                                        with_yasa=with_yasa, with_rules=with_rules,
                                        progress=progress, scorer=scorer)
        result.recording = str(signal.path)
        if result.yasa_unavailable:
            result.yasa_unavailable = result.yasa_unavailable.replace(edf.name, signal.path.name)
        result.source = {"format": "DREAMS", "channel": signal.channel, "rate_hz": signal.rate,
                         "edf_label": signal.edf_label}
        return result

    rec = Recording.open(recording_path)
    try:
        n = int(rec.n_epochs)
        reference = read_reference(reference_path, n)
        path = _study_path(rec, study_path)
        montage = study_montage(rec, path, scorer)
        t0 = time.perf_counter()
        summary = ScoringRun(rec, montage, path, runtime, rationale="none", actor=scorer).run(progress=progress)
        scoring_s = time.perf_counter() - t0
        fast_key = summary.key.for_pass(FAST)
        with Study.open(path) as study:
            store = SuggestionStore(study)
            fast = {e: s for e in range(n) if (s := store.get_pass(e, fast_key)) is not None}
        predicted: list[Stage | None] = [fast[e].stage if e in fast else None for e in range(n)]
        try:
            model_agr = agreement(reference, predicted)
        except NoCommonEpochsError:
            model_agr = None
        yasa_agr, yasa_why, yasa_stages = None, None, [None] * n
        fused_agr, fused = None, [None] * n   # fused: Stage | None per epoch
        opinions = {}
        t1 = time.perf_counter()
        if with_yasa:
            try:
                result = second_opinion.compute(rec, montage)
                for o in result.opinions:
                    opinions[o.epoch] = o
                    yasa_stages[o.epoch] = o.stage
                    mine = fast.get(o.epoch)
                    if mine is not None and mine.stage_probabilities and o.probabilities:
                        fused[o.epoch] = fused_stage(mine.stage_probabilities, o.probabilities)
                yasa_agr = agreement(reference, yasa_stages)
                if any(f is not None for f in fused):
                    try:
                        fused_agr = agreement(reference, fused)
                    except NoCommonEpochsError:   # fused only where the reference is unscored
                        fused_agr = None
            except second_opinion.SecondOpinionUnavailable as exc:
                yasa_why = str(exc)
            except NoCommonEpochsError:
                yasa_why = "YASA staged none of the reference's scored epochs"
        yasa_s = time.perf_counter() - t1
        offered_by = lead_all(fast, opinions, STAGER)
        offered = [offered_by[e].stage if e in offered_by else None for e in range(n)]
        offered_agr = None
        if with_yasa:   # where YASA could not run, the model's stage is what is offered
            try:
                offered_agr = agreement(reference, offered)
            except NoCommonEpochsError:
                offered_agr = None
        rules = {}
        if with_rules:
            rules = _rule_agreement(measure_recording(rec, montage), reference, fast)
        answers = list(fast.values())
        clean = [s for s in answers if s.stage in SLEEP_STAGES and not s.repaired
                 and not [f for f in s.flags if f != "edge_epoch"]]
        parse = {"answers": len(answers),
                 "parsed_without_repair": sum(1 for s in answers if s.stage in SLEEP_STAGES and not s.repaired),
                 "clean": len(clean), "flagged": sum(1 for s in answers if s.flags),
                 "no_stage": sum(1 for s in answers if s.stage not in SLEEP_STAGES)}
        epochs = [{"index": e,
                   "reference": reference[e].value if reference[e] in SLEEP_STAGES else None,
                   "predicted": predicted[e].value if predicted[e] in SLEEP_STAGES else None,
                   "yasa": yasa_stages[e].value if yasa_stages[e] in SLEEP_STAGES else None,
                   "fused": fused[e].value if fused[e] in SLEEP_STAGES else None,
                   "offered": offered[e].value if offered[e] in SLEEP_STAGES else None}
                  for e in range(n)]
        label = getattr(runtime, "label", "") or summary.model_id
        per_epoch = summary.per_epoch_s()
        return EvaluationResult(
            recording=str(rec.path), reference=str(reference_path), model=str(label), n_epochs=n,
            model_agreement=model_agr, yasa_agreement=yasa_agr, yasa_unavailable=yasa_why,
            fused_agreement=fused_agr, offered_agreement=offered_agr, epochs=epochs, parse=parse, rules=rules,
            seconds={"scoring": round(scoring_s, 2), "per_epoch": per_epoch, "yasa": round(yasa_s, 2),
                     "already_stored": summary.already_stored.get(FAST, 0)},
            montage={role: d.name for role, d in montage.roles.items() if d is not None})
    finally:
        rec.close()
