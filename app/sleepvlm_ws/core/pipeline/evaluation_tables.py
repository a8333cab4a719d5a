"""What ``sleepvlm-ws evaluate`` prints: the agreement tables of one recording and of many pooled.

``evaluate_recording`` (``core.pipeline.evaluate``) gives one ``EvaluationResult`` per
recording; these functions pool them (every epoch of every recording together) and lay the
agreements out as the text tables the CLI prints and the benchmarks save: the model, YASA, the
fused stage and the stage as offered, side by side on the epochs they share, each block naming
what it covers.
"""

from __future__ import annotations

from pathlib import Path

from ..base.stages import Stage
from ..trust.agreement import NoCommonEpochsError, agreement
from ..trust.fusion import FUSION_RULE
from .evaluate import EvaluationResult

__all__ = ["pooled", "format_pooled", "format_result", "format_table", "offered_line"]


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
    model's) on every epoch of every recording.

    Parameters
    ----------
    results : list of EvaluationResult
        One per recording.

    Returns
    -------
    dict
        The keys above (each agreement a dict, None where there are no common epochs).
    """
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
    side-by-side table on the epochs YASA staged and the model's table on all epochs.

    Parameters
    ----------
    results : list of EvaluationResult
        One per recording.

    Returns
    -------
    list of str
        The lines, without line ends.
    """
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
    """What ``sleepvlm-ws evaluate`` prints for one recording.

    Parameters
    ----------
    r : EvaluationResult
        One recording's result.

    Returns
    -------
    str
        The lines (agreement tables, confusion, rule agreement), joined by newlines.
    """
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
