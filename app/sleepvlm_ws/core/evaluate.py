"""Evaluate a model pack against a scored recording: the figures a model card reports.

``evaluate_recording`` scores a recording with a pack (fast pass, stored in a study file so a
rerun resumes and never repeats work), reads the reference hypnogram onto the same 30-s grid,
and compares:
- the model's stages with the reference (Cohen's kappa, accuracy, macro-F1, per-stage recall,
  confusion matrix: core/agreement.py);
- YASA's pretrained stager on the same epochs, side by side (core/second_opinion.py), or the
  reason it cannot run (no central EEG >= 80 Hz, ...);
- how many answers parsed without any repair, and how many were flagged;
- the cited rule IDs with the rule IDs the evidence measured on the signals supports for the
  reference stage (core/evidence: the same targets the default model was trained towards).
No Qt. Bad input raises InputError subclasses (one line).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError
from .agreement import Agreement, NoCommonEpochsError, agreement
from .stages import SLEEP_STAGES, Stage

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
    epochs: list[dict] = field(default_factory=list)
    parse: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    def to_dict(self, with_epochs: bool = True) -> dict:
        out = {"recording": self.recording, "reference": self.reference, "model": self.model,
               "n_epochs": self.n_epochs,
               "model_agreement": self.model_agreement.to_dict() if self.model_agreement else None,
               "yasa_agreement": self.yasa_agreement.to_dict() if self.yasa_agreement else None,
               "yasa_unavailable": self.yasa_unavailable, "parse": self.parse, "rules": self.rules,
               "seconds": self.seconds}
        if with_epochs:
            out["epochs"] = self.epochs
        return out


def find_scored_studies(directory: str | Path) -> list[tuple[Path, Path]]:
    """(recording, hypnogram) pairs in ``directory``: Sleep-EDF (``SC4001E0-PSG.edf`` +
    ``SC4001EC-Hypnogram.edf``), MASS (``01-01-0001 PSG.edf`` + ``01-01-0001 Base.edf``), or
    ``X.edf`` + ``X.tsv`` / ``.csv`` / ``.xml`` / ``.json`` / ``X-hypnogram.edf``."""
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
    return pairs


def _study_path(recording, study_path) -> Path:
    if study_path:
        return Path(study_path)
    from ..paths import user_data_dir

    folder = user_data_dir() / "evaluations"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{recording.fingerprint()[:16]}.svlm"


def _rule_agreement(evidence, reference: list[Stage], suggestions: dict) -> dict:
    from .evidence.rules_check import derive_rules

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
                       scorer: str = "evaluation") -> EvaluationResult:
    """Score ``recording_path`` with ``runtime`` (a LocalRuntime or RemoteRuntime) and compare
    with the hypnogram at ``reference_path``."""
    from . import second_opinion
    from .formats import import_hypnogram
    from .recording import Recording
    from .render import RENDERER_VERSION
    from .scoring_run import ScoringRun, study_montage
    from .study import Study
    from .suggestions import FAST, SuggestionStore

    rec = Recording.open(recording_path)
    try:
        n = int(rec.n_epochs)
        reference = list(import_hypnogram(reference_path, n_epochs=n).stages)
        path = _study_path(rec, study_path)
        montage = study_montage(rec, path, scorer)
        t0 = time.perf_counter()
        summary = ScoringRun(rec, montage, path, runtime, rationale="none", actor=scorer).run(progress=progress)
        scoring_s = time.perf_counter() - t0
        model_id = str(runtime.model_id)
        with Study.open(path) as study:
            store = SuggestionStore(study)
            fast = {e: s for e in range(n)
                    if (s := store.get_pass(e, model_id, RENDERER_VERSION, FAST)) is not None}
        predicted: list[Stage | None] = [fast[e].stage if e in fast else None for e in range(n)]
        try:
            model_agr = agreement(reference, predicted)
        except NoCommonEpochsError:
            model_agr = None
        yasa_agr, yasa_why, yasa_stages = None, None, [None] * n
        t1 = time.perf_counter()
        if with_yasa:
            try:
                result = second_opinion.compute(rec, montage)
                for o in result.opinions:
                    yasa_stages[o.epoch] = o.stage
                yasa_agr = agreement(reference, yasa_stages)
            except second_opinion.SecondOpinionUnavailable as exc:
                yasa_why = str(exc)
            except NoCommonEpochsError:
                yasa_why = "YASA staged none of the reference's scored epochs"
        yasa_s = time.perf_counter() - t1
        rules = {}
        if with_rules:
            from .evidence.measures import measure_recording

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
                   "yasa": yasa_stages[e].value if yasa_stages[e] in SLEEP_STAGES else None}
                  for e in range(n)]
        label = getattr(runtime, "label", "") or model_id
        per_epoch = summary.per_epoch_s()
        return EvaluationResult(
            recording=str(rec.path), reference=str(reference_path), model=str(label), n_epochs=n,
            model_agreement=model_agr, yasa_agreement=yasa_agr, yasa_unavailable=yasa_why,
            epochs=epochs, parse=parse, rules=rules,
            seconds={"scoring": round(scoring_s, 2), "per_epoch": per_epoch, "yasa": round(yasa_s, 2),
                     "already_stored": summary.already_stored.get(FAST, 0)})
    finally:
        rec.close()


def pooled(results: list[EvaluationResult]) -> dict:
    """Agreement over the epochs of all ``results`` together (model and YASA)."""
    ref, model, yasa = [], [], []
    for r in results:
        for e in r.epochs:
            ref.append(Stage(e["reference"]) if e["reference"] else None)
            model.append(Stage(e["predicted"]) if e["predicted"] else None)
            yasa.append(Stage(e["yasa"]) if e["yasa"] else None)
    out = {}
    for name, hyp in (("model_agreement", model), ("yasa_agreement", yasa)):
        try:
            out[name] = agreement(ref, hyp).to_dict()
        except NoCommonEpochsError:
            out[name] = None
    return out


# ---------------------------------------------------------------------------- text report
def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


def format_table(model: dict | None, yasa: dict | None, yasa_why: str | None = None) -> list[str]:
    """Side-by-side lines: model vs YASA (dicts from Agreement.to_dict())."""
    rows = [("epochs compared", "n_epochs", None), ("Cohen's kappa", "kappa", False),
            ("accuracy", "accuracy", True), ("macro-F1", "macro_f1", False)]
    lines = [f"{'':24}{'model':>10}{'YASA':>10}"]
    for label, key, pct in rows:
        vals = []
        for d in (model, yasa):
            v = None if d is None else d.get(key)
            vals.append(str(v) if pct is None and v is not None else _fmt(v, bool(pct)))
        lines.append(f"{label:24}{vals[0]:>10}{vals[1]:>10}")
    for stage in ("W", "N1", "N2", "N3", "R"):
        vals = [_fmt(None if d is None else d["recall"].get(stage), True) for d in (model, yasa)]
        lines.append(f"{'recall ' + stage:24}{vals[0]:>10}{vals[1]:>10}")
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
    lines += format_table(r.model_agreement.to_dict() if r.model_agreement else None,
                          r.yasa_agreement.to_dict() if r.yasa_agreement else None, r.yasa_unavailable)
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
