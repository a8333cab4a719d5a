"""The note an override needs: a small dialog that will not take an empty one.

An override of a suggestion is recorded with the technologist's reason (``ai_overridden``
decisions require a note). The dialog says so: its OK stays disabled, and the reason is shown
under the field, until something other than blanks is typed. Cancel records nothing.
"""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QVBoxLayout, QWidget

from ..core.base.stages import Stage
from ..core.study.suggestions import Suggestion

NOTE_NEEDED = "A note is required: say why you score it differently (it goes into the audit trail)."


class OverrideNoteDialog(QDialog):
    """Asks why ``stage`` and not the suggested one (or, with ``question``, anything else a
    note must answer); ``note()`` is the text typed."""

    def __init__(self, parent: QWidget | None, stage: Stage | None, suggestion: Suggestion, *,
                 question: str | None = None, title: str = "Override the AI suggestion"):
        super().__init__(parent)
        ai = suggestion.stage.label if suggestion.stage is not None else "no stage"
        whose = "YASA's" if suggestion.led else "the model's"
        self.setWindowTitle(title)
        self.question = QLabel(question or f"Why {stage.label} and not {whose} {ai}? (required)")
        self.question.setWordWrap(True)
        self.field = QLineEdit()
        self.reason = QLabel(NOTE_NEEDED)
        self.reason.setStyleSheet("color: #e0a040;")
        self.reason.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (self.question, self.field, self.reason, self.buttons):
            layout.addWidget(widget)
        self.field.textChanged.connect(self._check)
        self._check("")

    def _check(self, text: str) -> None:
        ok = bool(text.strip())
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)
        self.reason.setVisible(not ok)

    def accept(self) -> None:  # noqa: D102 - Enter in the field lands here too
        if self.field.text().strip():
            super().accept()

    def note(self) -> str:
        """The note as typed."""
        return self.field.text()


def ask_note_dialog(parent: QWidget, stage: Stage, suggestion: Suggestion) -> str | None:
    """The default note provider: the (modal) ``OverrideNoteDialog``; None when cancelled."""
    dialog = OverrideNoteDialog(parent, stage, suggestion)
    return dialog.note() if dialog.exec() == QDialog.DialogCode.Accepted else None


def ask_accept_note_dialog(parent: QWidget, suggestion: Suggestion, contradicted: str) -> str | None:
    """Why accept a suggestion the signal contradicts (the lab's setting asks for a note)."""
    stage = suggestion.stage.label if suggestion.stage is not None else "it"
    dialog = OverrideNoteDialog(parent, None, suggestion, title="Accept a contradicted suggestion",
                                question=f"The signal contradicts {contradicted}. Why accept {stage}? "
                                         f"(required)")
    return dialog.note() if dialog.exec() == QDialog.DialogCode.Accepted else None
