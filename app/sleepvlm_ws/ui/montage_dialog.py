"""MontageDialog: choose which recording channels feed each of the six roles."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QGridLayout, QLabel, QVBoxLayout, QWidget

from ..core.signals.montage import ROLE_TITLES, ROLES, Derivation, Montage

MISSING = "(missing)"
NO_REFERENCE = "(none)"


class MontageDialog(QDialog):
    """One row per role: positive channel ("(missing)" allowed) and reference ("(none)" allowed).

    ``montage()`` gives the chosen Montage; OK is disabled while a row references itself.
    """

    def __init__(self, channel_labels: list[str], current: Montage, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Montage")
        self.positive: dict[str, QComboBox] = {}
        self.reference: dict[str, QComboBox] = {}
        grid = QGridLayout()
        grid.addWidget(QLabel("<b>Role</b>"), 0, 0)
        grid.addWidget(QLabel("<b>Channel</b>"), 0, 1)
        grid.addWidget(QLabel("<b>Reference</b>"), 0, 2)
        labels = list(channel_labels)
        for row, role in enumerate(ROLES, start=1):
            derivation = current.roles.get(role)
            positive = QComboBox()
            positive.addItems([MISSING, *labels])
            reference = QComboBox()
            reference.addItems([NO_REFERENCE, *labels])
            if derivation is not None:
                self._select(positive, derivation.positive)
                self._select(reference, derivation.negative or NO_REFERENCE)
            positive.setObjectName(f"positive:{role}")
            reference.setObjectName(f"reference:{role}")
            positive.currentIndexChanged.connect(self._validate)
            reference.currentIndexChanged.connect(self._validate)
            grid.addWidget(QLabel(ROLE_TITLES.get(role, role)), row, 0)
            grid.addWidget(positive, row, 1)
            grid.addWidget(reference, row, 2)
            self.positive[role], self.reference[role] = positive, reference
        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #c03030")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self._validate()

    @staticmethod
    def _select(combo: QComboBox, text: str) -> None:
        index = combo.findText(text)
        if index < 0:                       # a label the file no longer has: keep it visible
            combo.addItem(text)
            index = combo.count() - 1
        combo.setCurrentIndex(index)

    def set_role(self, role: str, positive: str | None, reference: str | None = None) -> None:
        """Choose a role's channels programmatically (None positive: missing)."""
        self._select(self.positive[role], positive or MISSING)
        self._select(self.reference[role], reference or NO_REFERENCE)

    def _validate(self) -> None:
        problems = []
        for role in ROLES:
            positive = self.positive[role].currentText()
            missing = positive == MISSING
            self.reference[role].setEnabled(not missing)
            if not missing and positive == self.reference[role].currentText():
                problems.append(f"{role}: channel and reference are the same")
        self.problem.setText("; ".join(problems))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problems)

    def montage(self) -> Montage:
        roles: dict[str, Derivation | None] = {}
        for role in ROLES:
            positive = self.positive[role].currentText()
            reference = self.reference[role].currentText()
            if positive == MISSING:
                roles[role] = None
            else:
                roles[role] = Derivation(positive, None if reference == NO_REFERENCE else reference)
        return Montage(roles)
