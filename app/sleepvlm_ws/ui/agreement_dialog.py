"""Study ▸ Agreement with the AI, and File ▸ Report: how the window reaches the core's
agreement figures and PDF report.

``AgreementDialog`` shows Cohen's kappa, accuracy, macro-F1, per-stage recall and precision and
the confusion matrix (rows: the technologist's final stages, columns: the AI's suggestions) as
``core.trust.agreement`` computes them; it computes nothing itself.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QApplication, QDialog, QDialogButtonBox, QFileDialog, QLabel, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ..core.trust.agreement import Agreement, agreement
from ..core.trust.report import format_kappa, write_report
from ..core.trust.report_content import ai_suggested_stages, describe_model
from ..errors import InputError

NO_SUGGESTIONS = ("There are no AI suggestions in this study yet: score the night with a model "
                  "first.")
REPORT_FILTER = "PDF report (*.pdf)"


class AgreementDialog(QDialog):
    def __init__(self, result: Agreement, model_label: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Agreement: AI suggestions and the final scoring")
        self.result = result
        layout = QVBoxLayout(self)
        self.summary = QLabel(
            f"Model: {model_label}<br>"
            f"Epochs compared: {result.n_epochs} (both gave a sleep stage); left out: "
            f"{result.n_excluded}<br>"
            f"<b>Cohen's kappa: {format_kappa(result.kappa)}</b> · "
            f"accuracy {result.accuracy * 100:.1f}% · macro-F1 {result.macro_f1:.3f}")
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary)
        labels = [s.label for s in result.stages]

        layout.addWidget(QLabel("Per stage (reference: the final scoring)"))
        self.per_stage = _table(["Recall", "Precision", "Final epochs"], labels)
        for i, stage in enumerate(result.stages):
            for j, text in enumerate((_pct(result.recall[stage]), _pct(result.precision[stage]),
                                      str(sum(result.confusion[i])))):
                self.per_stage.setItem(i, j, _cell(text))
        layout.addWidget(self.per_stage)

        layout.addWidget(QLabel("Confusion matrix (rows: final scoring, columns: AI)"))
        self.confusion = _table([f"AI {x}" for x in labels], [f"Final {x}" for x in labels])
        for i, row in enumerate(result.confusion):
            total = sum(row)
            for j, count in enumerate(row):
                item = _cell(str(count))
                if total:   # shade by the share of the row, as the report does
                    shade = int(255 - 150 * count / total)
                    item.setBackground(QBrush(QColor(shade, shade, 255)))
                self.confusion.setItem(i, j, item)
        layout.addWidget(self.confusion)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        # wide enough for the whole confusion matrix: no horizontal scrolling to read it
        widths = []
        for table in (self.per_stage, self.confusion):
            table.resizeColumnsToContents()
            widths.append(table.verticalHeader().sizeHint().width() + table.horizontalHeader().length()
                          + 2 * table.frameWidth() + 24)
        self.resize(max(560, max(widths) + 40), 520)


def _table(columns: list[str], rows: list[str]) -> QTableWidget:
    table = QTableWidget(len(rows), len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setVerticalHeaderLabels(rows)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _cell(text: str) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
    return item


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


# ------------------------------------------------------------------ window actions
def open_agreement(window) -> AgreementDialog | None:
    """Show the agreement of the AI (the loaded model, else the latest one) with the final
    stages; a one-line error when there is nothing to compare."""
    session = window.session
    if session is None:
        return None
    try:
        key = window.ai.controller.key
        found = ai_suggested_stages(session.study, key) if key is not None else None
        if found is None:
            found = ai_suggested_stages(session.study)
        if found is None:
            window.show_error("Agreement", NO_SUGGESTIONS)
            return None
        key, ai_stages = found
        result = agreement(session.study.stages(), ai_stages)
        label = describe_model(session.study, key.model_id, key.renderer_version).label
    except InputError as error:
        window.show_error("Agreement", str(error))
        return None
    dialog = AgreementDialog(result, label, window)
    window.agreement_dialog = dialog
    dialog.open()
    return dialog


def choose_report(window, deidentify: bool = False) -> Path | None:
    """Ask where to save the PDF report, then write it."""
    session = window.session
    if session is None:
        return None
    suffix = ".report-deidentified.pdf" if deidentify else ".report.pdf"
    default = str(session.study.path.with_name(session.recording.path.stem + suffix))
    path, _ = QFileDialog.getSaveFileName(window, "Save the study report", default, REPORT_FILTER)
    if not path:
        return None
    if not path.lower().endswith(".pdf"):
        path += ".pdf"
    return write_report_to(window, path, deidentify)


def write_report_to(window, path: str | Path, deidentify: bool = False) -> Path | None:
    """Write the report of the open study; errors go to the window's error dialog."""
    session = window.session
    if session is None:
        return None
    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)   # about a second for a night
    try:
        written = write_report(session.study, path, author=session.scorer, deidentify=deidentify)
    except InputError as error:
        written, problem = None, str(error)
    finally:
        QApplication.restoreOverrideCursor()
    if written is None:
        window.show_error("Report", problem)
        return None
    window.statusBar().showMessage(f"Report written: {written}", 5000)
    return written
