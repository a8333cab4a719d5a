"""The study report: a PDF the technologist signs off and files.

Page 1: header (study, recording, patient fields, who scored, the model pack), the hypnogram
(final stages; the AI's suggestions as a second track when there are any) and the AASM sleep
statistics. Page 2 (only with AI suggestions): agreement of the AI with the final stages.
Last page: the audit summary. ``deidentify`` leaves out the patient fields, the file names, the
study id and the recording date (the hypnogram is then drawn in hours from the start).

Drawn with matplotlib (Agg figures, ``PdfPages``) with TrueType fonts embedded so the text can
be searched and copied. Written atomically (a temporary file renamed over the target), and the
report is recorded in the study's audit trail.
"""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Iterable

import numpy as np

from ...errors import HypnogramFormatError, InputError
from ..base.stages import EPOCH_SECONDS, Stage
from ..study.formats._common import write_atomically
from ..study.study import Study
from .report_content import SOURCE_LABELS, ReportContent, gather
from .sleep_statistics import SETTLED_ROWS, format_value

REPORT_EVENT = "report"
PAGE_SIZE = (8.27, 11.69)          # A4 portrait, inches
#: Where the hypnogram tracks sit on page 1, as figure fractions (left, bottom, width, height).
HYPNOGRAM_BOX = (0.10, 0.505, 0.86, 0.145)
AI_TRACK_BOX = (0.10, 0.385, 0.86, 0.08)
HYPNOGRAM_BOX_ALONE = (0.10, 0.40, 0.86, 0.25)
_LEVEL = {Stage.W: 4, Stage.R: 3, Stage.N1: 2, Stage.N2: 1, Stage.N3: 0}
_REM_COLOUR = "#c0392b"
_AI_COLOUR = "#2c6fbb"


class ReportError(InputError):
    """A report that cannot be written."""


def write_report(study: Study, out: str | Path, *, author: str, deidentify: bool = False,
                 lights_off: int | None = None, lights_on: int | None = None,
                 pack_dirs: Iterable[str | Path] | None = None) -> Path:
    """Write the PDF report of ``study`` to ``out`` (atomically) and record it in the study's
    audit trail.

    Parameters
    ----------
    study : Study
        The open study.
    out : str or Path
        The PDF to write: a name ending ``.pdf`` that is neither the study file nor its recording.
    author : str
        Who reports: named in the header ("Report by") and the actor of the audit event (required,
        not blank).
    deidentify : bool
        Leave out the patient fields, the file names, the study id and the recording date (the
        hypnogram is then drawn in hours from the start). Default False.
    lights_off, lights_on : int, optional
        The sleep statistics' analysed period as epoch indices, ``lights_on`` exclusive (default:
        the whole recording).
    pack_dirs : iterable of str or Path, optional
        Where to look for the model pack the AI suggestions came from (default: the usual pack
        folders).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ReportError
        One line: ``out`` is not a .pdf name, is the study file or its recording, or cannot be
        written, or the lights lie outside the night or out of order.
    ValueError
        For a blank ``author``, raised only after the PDF has been written (it is then not audited).
    """
    out = Path(out)
    if out.suffix.lower() != ".pdf":
        raise ReportError(out, "a report is a PDF: give the file name a .pdf ending")
    for protected in (study.path, study.recording_path):
        if out.resolve() == Path(protected).resolve():
            raise ReportError(out, "is the study's own recording or study file; "
                                   "choose another name")
    try:
        content = gather(study, author=author, deidentify=deidentify, lights_off=lights_off,
                         lights_on=lights_on, pack_dirs=pack_dirs)
    except ValueError as exc:
        raise ReportError(out, str(exc)) from None
    pages = []
    try:
        write_atomically(out, lambda tmp: pages.append(render_pdf(content, tmp)))
    except HypnogramFormatError as exc:
        raise ReportError(out, exc.problem) from None
    study.record_event(REPORT_EVENT, {"file": str(out.resolve()), "deidentified": deidentify,
                                      "pages": pages[0]}, actor=author)
    return out


def render_pdf(content: ReportContent, path: str | Path) -> int:
    """Draw the report into ``path``; returns the number of pages."""
    import matplotlib  # late: matplotlib loads only when a report is drawn
    from matplotlib.backends.backend_pdf import PdfPages

    # text.parse_math off (read when each text is made): header fields come from the recording
    # and the study; '$...$' in an EDF patient field must print as typed, not as mathtext or a
    # crash (found by the failure drills)
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.size": 9, "text.parse_math": False}):
        pages = [_page_summary(content)]
        if content.ai_stages is not None:
            pages.append(_page_agreement(content))
        pages.append(_page_audit(content))
        with PdfPages(str(path), metadata={"Title": "Sleep study report",
                                           "Creator": "SleepVLM Workstation"}) as pdf:
            for fig in pages:
                pdf.savefig(fig)
    return len(pages)


# ---------------------------------------------------------------------------- pages
def _figure(title: str):
    from matplotlib.figure import Figure  # late: matplotlib loads only when a report is drawn

    fig = Figure(figsize=PAGE_SIZE)
    fig.text(0.06, 0.965, title, fontsize=15, weight="bold", va="top")
    fig.text(0.94, 0.965, "SleepVLM Workstation", fontsize=8, color="0.4", ha="right", va="top")
    return fig


def _page_summary(c: ReportContent):
    fig = _figure("Sleep study report" + (" (de-identified)" if c.deidentified else ""))
    y = 0.935
    for label, text in c.header[:16]:
        fig.text(0.06, y, label, fontsize=9, color="0.35", va="top")
        fig.text(0.24, y, _clip(str(text), 95), fontsize=9, va="top")
        y -= 0.0165
    hyp_box = HYPNOGRAM_BOX if c.ai_stages is not None else HYPNOGRAM_BOX_ALONE
    ax = fig.add_axes(hyp_box)
    _draw_hypnogram(ax, c.stages, c, "black", "Final scoring")
    if c.ai_stages is not None:
        ax2 = fig.add_axes(AI_TRACK_BOX, sharex=ax)
        label = "AI suggestions" + (f" ({c.model.label})" if c.model else "")
        _draw_hypnogram(ax2, c.ai_stages, c, _AI_COLOUR, _clip(label, 80))
    if c.ai_stages is not None:   # one time axis, under the AI track
        ax.tick_params(labelbottom=False)
        ax.set_xlabel("")
    if c.statistics is None:
        fig.text(0.06, 0.30, "No epoch is scored yet: no sleep statistics.", fontsize=10)
        return fig
    fig.text(0.06, 0.315, "Sleep statistics (AASM)", fontsize=11, weight="bold")
    stats = c.statistics
    mark = stats.provisional        # figures unscored epochs would change carry a *
    rows = [(label + (" *" if mark and label not in SETTLED_ROWS else ""), format_value(value), unit)
            for label, value, unit in stats.rows(c.start)]
    if mark:
        fig.text(0.40, 0.315, f"* provisional: {stats.unscored_epochs} of "
                 f"{stats.lights_on - stats.lights_off} epochs from lights off to on are unscored",
                 fontsize=9, color="#c03000")
    half = (len(rows) + 1) // 2
    for i, part in enumerate((rows[:half], rows[half:])):
        tax = fig.add_axes((0.06 + i * 0.46, 0.03, 0.43, 0.27))
        tax.axis("off")
        table = tax.table(cellText=[list(r) for r in part], colLabels=["", "value", "unit"],
                          colWidths=[0.66, 0.2, 0.14], loc="upper left", cellLoc="left",
                          edges="horizontal")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1, 1.25)
    fig.text(0.06, 0.012, "Lights off/on: the recording's start and end unless given. Artefact "
             "and unscored epochs count in TIB, never in TST or WASO.", fontsize=7, color="0.4")
    return fig


def _draw_hypnogram(ax, stages: list, c: ReportContent, colour: str, title: str) -> None:
    n = len(stages)
    hours = np.arange(n + 1) * EPOCH_SECONDS / 3600.0
    levels = np.array([_LEVEL.get(s, np.nan) for s in stages] + [np.nan], dtype=float)
    levels[-1] = levels[-2] if n else np.nan
    ax.step(hours, levels, where="post", color=colour, linewidth=0.9)
    rem = np.array([s is Stage.R for s in stages] + [False])
    if rem.any():   # REM as a thick red bar, as sleep labs draw it
        ax.hlines(np.full(int(rem.sum()), 3.0), hours[rem], hours[np.roll(rem, 1)],
                  color=_REM_COLOUR, linewidth=3.5)
    artefact = [i for i, s in enumerate(stages) if s is Stage.ARTEFACT]
    if artefact:
        width = EPOCH_SECONDS / 3600.0
        ax.broken_barh([(hours[i], width) for i in artefact], (-0.6, 5.2), color="0.85")
    stats = c.statistics
    if stats is not None:
        for epoch in (stats.lights_off, stats.lights_on):
            ax.axvline(epoch * EPOCH_SECONDS / 3600.0, color="0.5", linestyle="--", linewidth=0.7)
    ax.set_ylim(-0.6, 4.6)
    ax.set_yticks([4, 3, 2, 1, 0], ["W", "REM", "N1", "N2", "N3"], fontsize=7)
    ax.set_xlim(0, max(hours[-1], EPOCH_SECONDS / 3600.0))
    ax.set_title(title, fontsize=9, loc="left")
    ax.grid(axis="x", color="0.9", linewidth=0.5)
    if c.start is not None:
        from matplotlib.ticker import FuncFormatter  # late: matplotlib loads only when a report is drawn

        start = c.start
        ax.xaxis.set_major_formatter(FuncFormatter(
            lambda h, _pos: (start + timedelta(hours=h)).strftime("%H:%M")))
        ax.set_xlabel("clock time", fontsize=8)
    else:
        ax.set_xlabel("hours from the recording start", fontsize=8)
    ax.tick_params(labelsize=7)


def _page_agreement(c: ReportContent):
    fig = _figure("AI suggestions and the final scoring")
    lines = []
    if c.model is not None:
        lines.append(f"Model: {c.model.label} · id {c.model.model_id[:12]} · renderer "
                     f"{c.model.renderer_version}")
        # whole sentences, wrapped: the card's safety sentence is never cut off
        if c.model.provenance:
            lines += textwrap.wrap(f"Provenance: {c.model.provenance}", 100)
        if c.model.real_data:
            lines += textwrap.wrap(f"Real recordings: {c.model.real_data}", 100)
    a = c.agreement
    if a is None:
        lines.append(c.agreement_problem or "No epoch can be compared.")
    else:
        lines += [
            f"Epochs compared: {a.n_epochs} (both gave a sleep stage); left out: {a.n_excluded}",
            f"Cohen's kappa: {format_kappa(a.kappa)}    Accuracy: {a.accuracy * 100:.1f}%    "
            f"Macro-F1: {a.macro_f1:.3f}",
            f"Of the compared epochs, {c.accepted_compared} stand as accepted suggestions of the "
            "model's own stage (they agree by construction).",
        ]
    y = 0.925
    for line in lines:
        fig.text(0.06, y, line, fontsize=9, va="top")
        y -= 0.022
    if a is None:
        return fig
    fig.text(0.06, 0.80, "Per stage (reference: the final scoring)", fontsize=11, weight="bold")
    rows = []
    for i, s in enumerate(a.stages):
        rows.append([s.label, str(sum(a.confusion[i])), _pct(a.recall[s]), _pct(a.precision[s]),
                     "—" if a.f1[s] is None else f"{a.f1[s]:.3f}"])
    tax = fig.add_axes((0.06, 0.60, 0.88, 0.18))
    tax.axis("off")
    t = tax.table(cellText=rows, colLabels=["Stage", "Final epochs", "Recall", "Precision", "F1"],
                  loc="upper left", cellLoc="center", edges="horizontal")
    t.auto_set_font_size(False)
    t.set_fontsize(9)
    t.scale(1, 1.4)
    fig.text(0.06, 0.55, "Confusion matrix (rows: final scoring, columns: AI)", fontsize=11,
             weight="bold")
    _draw_confusion(fig.add_axes((0.18, 0.12, 0.62, 0.40)), a)
    return fig


def _draw_confusion(ax, a) -> None:
    counts = np.array(a.confusion, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    labels = [s.label for s in a.stages]
    ax.set_xticks(range(len(labels)), [f"AI {x}" for x in labels], fontsize=8)
    ax.set_yticks(range(len(labels)), [f"Final {x}" for x in labels], fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.6 else "black")


def _page_audit(c: ReportContent):
    fig = _figure("Audit summary")
    s = c.audit
    rows = [[SOURCE_LABELS[k], str(v)] for k, v in s.decisions_by_source.items()]
    rows.insert(3, ["  of which with a note", str(s.overrides_with_note)])
    rows.append(["Decisions undone", str(s.undone)])
    final_rows = [[("Unscored" if k == "unscored" else SOURCE_LABELS.get(k, k)), str(v)]
                  for k, v in sorted(s.final_source.items())]
    trail = [["Audit events", str(s.n_events)],
             ["Chain", "intact" if s.chain_ok else "BROKEN"],
             ["AI scoring runs started / finished", f"{s.ai_runs_started} / {s.ai_runs_finished}"],
             ["Hypnogram imports", str(s.imports)],
             ["Exports", str(s.exports)]]
    y = 0.93
    for title, body in (("Decisions recorded (undone ones included)", rows),
                        ("Where each epoch's final stage came from", final_rows),
                        ("Audit trail", trail)):
        fig.text(0.06, y, title, fontsize=11, weight="bold", va="top")
        height = 0.021 * len(body)
        tax = fig.add_axes((0.06, y - 0.02 - height, 0.6, height))
        tax.axis("off")
        t = tax.table(cellText=body, colWidths=[0.75, 0.25], loc="upper left", cellLoc="left",
                      edges="horizontal")
        t.auto_set_font_size(False)
        t.set_fontsize(9)
        t.scale(1, 1.3)
        y -= height + 0.06
    fig.text(0.06, y, _clip(s.chain_reason, 110), fontsize=8, color="0.3", va="top")
    return fig


# -------------------------------------------------------------------------- helpers
def format_kappa(kappa: float | None) -> str:
    """Kappa as printed in the report: three decimals, or why it is undefined.

    Parameters
    ----------
    kappa : float or None
        Cohen's kappa; None when undefined (both scorings used one stage only).

    Returns
    -------
    str
        E.g. ``"0.734"``, or ``"undefined (one stage only)"``.
    """
    return "undefined (one stage only)" if kappa is None else f"{kappa:.3f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"

