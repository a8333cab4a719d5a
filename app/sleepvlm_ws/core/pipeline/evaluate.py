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
from ..trust.fusion import FUSION_RULE, fused_stage
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
    (``excerptN.txt`` + ``Hypnogram_excerptN.txt``; EDF pairs first, then DREAMS pairs)."""
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
    """Whether ``evaluate_recording`` reads ``path`` as a DREAMS signal (a ``.txt`` file)."""
    return Path(path).suffix.lower() == ".txt"


def read_reference(reference_path: str | Path, n_epochs: int) -> list[Stage]:
    """The reference hypnogram on the 30-s grid, ``n_epochs`` long (cut, or padded unscored):
    a DREAMS hypnogram (``[Hypnogram]`` first, or named ``Hypnogram_*.txt``) through
    core/signals/dreams.py, anything else through core/study/formats (``import_hypnogram``)."""
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
    this returns; the result names the text file and carries ``source`` (channel, rate)."""
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
        model_id = str(runtime.model_id)
        with Study.open(path) as study:
            store = SuggestionStore(study)
            fast = {e: s for e in range(n)
                    if (s := store.get_pass(e, model_id, summary.renderer_version, FAST)) is not None}
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
        label = getattr(runtime, "label", "") or model_id
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


def _agreement_or_none(reference, compared) -> dict | None:
    try:
        return agreement(reference, compared).to_dict()
    except NoCommonEpochsError:
        return None


def pooled(results: list[EvaluationResult]) -> dict:
    """Agreement over the epochs of all ``results`` together, and which recordings it covers.

    ``model_agreement``: the model on every epoch of every recording (``recordings``);
    ``yasa_agreement``: YASA on the epochs it staged (``yasa_recordings``: the recordings it
    staged at all). ``side_by_side``: both, and the fused stage (None where the model gave no
    probabilities), on the same epochs, those YASA staged (equal to the above when YASA staged
    everything). ``offered_agreement``: the stage as offered (YASA's where it staged, else the
    model's) on every epoch of every recording."""
    ref, model, yasa, fused, offered = [], [], [], [], []
    yasa_names = []
    for r in results:
        name = Path(r.recording).name
        for e in r.epochs:
            ref.append(Stage(e["reference"]) if e["reference"] else None)
            model.append(Stage(e["predicted"]) if e["predicted"] else None)
            yasa.append(Stage(e["yasa"]) if e["yasa"] else None)
            fused.append(Stage(e["fused"]) if e.get("fused") else None)
            led = e.get("offered", e["yasa"] or e["predicted"])   # before "offered" was kept
            offered.append(Stage(led) if led else None)
        if any(e["yasa"] for e in r.epochs) and name not in yasa_names:
            yasa_names.append(name)
    staged = [i for i, y in enumerate(yasa) if y is not None]
    return {
        "model_agreement": _agreement_or_none(ref, model),
        "yasa_agreement": _agreement_or_none(ref, yasa),
        "offered_agreement": _agreement_or_none(ref, offered),
        "recordings": [Path(r.recording).name for r in results],
        "yasa_recordings": yasa_names,
        "side_by_side": {
            "recordings": yasa_names, "epochs": len(staged),
            "model_agreement": _agreement_or_none([ref[i] for i in staged], [model[i] for i in staged]),
            "yasa_agreement": _agreement_or_none([ref[i] for i in staged], [yasa[i] for i in staged]),
            "fused_agreement": _agreement_or_none([ref[i] for i in staged], [fused[i] for i in staged]),
        },
    }


def format_pooled(results: list[EvaluationResult]) -> list[str]:
    """The pooled lines ``sleepvlm-ws evaluate FOLDER`` prints, each block naming what it
    covers: one side-by-side table when YASA staged every epoch (or was left out), else the
    side-by-side table on the epochs YASA staged and the model's table on all epochs."""
    p = pooled(results)
    n = len(results)
    sbs = p["side_by_side"]
    model_n = (p["model_agreement"] or {}).get("n_epochs")
    offered = [offered_line(p["offered_agreement"], f"all {n} recordings")] if sbs["epochs"] else []
    if not sbs["epochs"] or sbs["epochs"] == sum(len(r.epochs) for r in results):
        return [f"all {n} recordings together:",
                *format_table(p["model_agreement"], p["yasa_agreement"],
                              fused=sbs["fused_agreement"] if sbs["epochs"] else None), *offered]
    without = [name for name in p["recordings"] if name not in sbs["recordings"]]
    with_yasa = sum(1 for r in results if any(e["yasa"] for e in r.epochs))
    return [f"{with_yasa} of {n} recordings together, model and YASA on the same "
            f"{sbs['epochs']} epochs (those YASA staged: {', '.join(sbs['recordings'])}):",
            *format_table(sbs["model_agreement"], sbs["yasa_agreement"], fused=sbs["fused_agreement"]),
            "",
            f"all {n} recordings together, model only ({model_n} epochs: {', '.join(p['recordings'])}):",
            *format_table(p["model_agreement"], None,
                          f"not staged for {', '.join(without)}" if without else
                          "staged only some of the epochs (see above)"), *offered]


def offered_line(offered: dict | None, what: str) -> str:
    """One line: the stage as offered (core/review/suggested_stage.py) against the reference."""
    if offered is None:
        return f"as offered (YASA where it staged, else the model), {what}: nothing compared"
    return (f"as offered (YASA where it staged, else the model), {what}: kappa "
            f"{_fmt(offered['kappa'])}, accuracy {_fmt(offered['accuracy'], True)}, macro-F1 "
            f"{_fmt(offered['macro_f1'])} ({offered['n_epochs']} epochs)")


# ---------------------------------------------------------------------------- text report
def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


def format_table(model: dict | None, yasa: dict | None, yasa_why: str | None = None,
                 fused: dict | None = None) -> list[str]:
    """Side-by-side lines: model vs YASA, and the fused stage when given (dicts from
    Agreement.to_dict())."""
    rows = [("epochs compared", "n_epochs", None), ("Cohen's kappa", "kappa", False),
            ("accuracy", "accuracy", True), ("macro-F1", "macro_f1", False)]
    scorers = [model, yasa] + ([fused] if fused is not None else [])
    lines = [f"{'':24}{'model':>10}{'YASA':>10}" + (f"{'fused':>10}" if fused is not None else "")]
    for label, key, pct in rows:
        vals = []
        for d in scorers:
            v = None if d is None else d.get(key)
            vals.append(str(v) if pct is None and v is not None else _fmt(v, bool(pct)))
        lines.append(f"{label:24}" + "".join(f"{v:>10}" for v in vals))
    for stage in ("W", "N1", "N2", "N3", "R"):
        vals = [_fmt(None if d is None else d["recall"].get(stage), True) for d in scorers]
        lines.append(f"{'recall ' + stage:24}" + "".join(f"{v:>10}" for v in vals))
    if fused is not None:
        lines.append(f"fused: {FUSION_RULE} (core/trust/fusion.py), on the epochs both staged")
    if yasa is None and yasa_why:
        lines.append(f"YASA: {yasa_why}")
    if model is not None:
        labels = model["confusion"]["labels"]
        lines.append("")
        lines.append("confusion (model): rows reference, columns predicted")
        lines.append(" " * 6 + "".join(f"{s:>7}" for s in labels))
        for s, row in zip(labels, model["confusion"]["counts"]):
            lines.append(f"{s:>6}" + "".join(f"{c:>7}" for c in row))
    return lines


def format_result(r: EvaluationResult) -> str:
    lines = [f"{Path(r.recording).name}: {r.n_epochs} epochs; reference {Path(r.reference).name}; "
             f"model {r.model}"]
    if r.source:
        central = r.montage.get("C4-M1")
        lines.append(f"{r.source['format']} excerpt: channel {r.source['channel']} at "
                     f"{r.source['rate_hz']:g} Hz, central EEG (C4-M1 role): {central or 'none'}")
    lines += format_table(r.model_agreement.to_dict() if r.model_agreement else None,
                          r.yasa_agreement.to_dict() if r.yasa_agreement else None, r.yasa_unavailable,
                          fused=r.fused_agreement.to_dict() if r.fused_agreement else None)
    if r.offered_agreement is not None:
        lines.append(offered_line(r.offered_agreement.to_dict(), "this recording"))
    p = r.parse
    if p.get("answers"):
        lines.append("")
        lines.append(f"answers parsed without repair: {p['parsed_without_repair']}/{p['answers']} "
                     f"({100 * p['parsed_without_repair'] / p['answers']:.1f}%), flagged {p['flagged']}")
    if r.rules.get("epochs"):
        lines.append(f"cited rules = evidence-derived rules for the reference stage: "
                     f"{_fmt(r.rules['exact'], True)} of {r.rules['epochs']} epochs "
                     f"(mean Jaccard {_fmt(r.rules['jaccard'])}); where the stage is right: "
                     f"{_fmt(r.rules['exact_stage_correct'], True)}")
    if r.seconds.get("per_epoch"):
        lines.append(f"scoring: {r.seconds['scoring']:.0f} s ({r.seconds['per_epoch']:.3f} s per epoch)")
    return "\n".join(lines)
