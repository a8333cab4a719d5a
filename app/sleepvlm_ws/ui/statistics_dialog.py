"""Study ▸ Sleep statistics: the night's AASM statistics in a dialog, as the PDF report has them.

The figures are ``core.trust.sleep_statistics``'s for the study's stages, lights off and on at
the recording's start and end (``report_content.night_statistics``); while epochs are
unscored the figures they would change are marked with a * and the dialog says how many. It
computes nothing itself.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout

from ..core.trust.report_content import night_statistics
from ..core.trust.sleep_statistics import SETTLED_ROWS, SleepStatistics, format_value
from ..errors import InputError

NO_STATISTICS = "No epoch is scored yet: there are no sleep statistics."


class StatisticsDialog(QDialog):
    """The statistics' rows (label, value, unit), provisional ones marked."""

    def __init__(self, statistics: SleepStatistics, start=None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Sleep statistics (AASM)")
        layout = QVBoxLayout(self)
        provisional = statistics.provisional
        self.warning = QLabel(f"* provisional: {statistics.unscored_epochs} of "
                              f"{statistics.lights_on - statistics.lights_off} epochs from lights "
                              f"off to on are unscored; these figures will change as they are scored")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #e06020;")
        self.warning.setVisible(provisional)
        layout.addWidget(self.warning)
        rows = statistics.rows(start)
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["value", "unit"])
        self.table.setVerticalHeaderLabels(
            [label + (" *" if provisional and label not in SETTLED_ROWS else "") for label, _, _ in rows])
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for i, (_label, value, unit) in enumerate(rows):
            for j, text in enumerate((format_value(value), unit)):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()
        layout.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(440, 640)

    def text(self) -> str:
        """The rows as shown, one ``label: value unit`` per line (for tests and copying)."""
        return "\n".join(f"{self.table.verticalHeaderItem(i).text()}: {self.table.item(i, 0).text()} "
                         f"{self.table.item(i, 1).text()}".rstrip() for i in range(self.table.rowCount()))


def open_statistics(window) -> StatisticsDialog | None:
    """Show the open study's statistics (a one-line error when there are none)."""
    session = window.session
    if session is None:
        return None
    try:
        statistics = night_statistics(session.study)
    except (InputError, ValueError) as error:
        window.show_error("Sleep statistics", str(error))
        return None
    if statistics is None:
        window.show_error("Sleep statistics", NO_STATISTICS)
        return None
    dialog = StatisticsDialog(statistics, session.recording.start, window)
    window.statistics_dialog = dialog
    dialog.open()
    return dialog
