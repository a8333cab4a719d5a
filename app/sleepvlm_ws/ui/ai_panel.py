"""AIPanel: what the model suggests for the epoch on screen, and the technologist's answer to it.

Shows the model (name, version), the suggested stage in large type with the model's probability
for it beside it ("N2 · 87 %", "—" when unknown; the tooltip lists all five), one chip per cited rule
(its tooltip is the rule's title and text from the catalogue; an unknown rule or one that does
not belong to the suggested stage is flagged), the rationale and, in plain words, anything the
answer needed: a repair to be read, a flag. Buttons: Accept (Enter), Override (O, then a stage
key, then a note saying why) and Explain (ask the model for this epoch's rationale now).

Where the stage offered is the real-trained stager's (``core.review.suggested_stage``), a line
under it says so ("Stage from YASA 0.8.1 (EEG), trained on real nights") and what the model
itself read: the chips, flags and rationale are then the model's reading, named as such.

Each chip carries a badge once the epoch's signal has been measured: ✓ the measurements
support the rule, ✗ they contradict it, ? it cannot be measured here (the tooltip says why, with
the measured value). Checkable facts in the rationale ("a spindle in C4 at 12 s", "slow waves
over 20%") are underlined in the same colours, with the reason as their tooltip.

Nothing the model wrote is ever shown as HTML: stage, rules, flags and rationale go into
widgets set as plain text (the rationale through ``QTextEdit.setPlainText``), and the rule
tooltips escape the IDs they quote.
"""

from __future__ import annotations

from typing import Callable, Mapping

from PySide6.QtCore import QEvent, QObject, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QPainter, QPixmap, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QTextEdit,
                               QToolButton, QToolTip, QVBoxLayout, QWidget)

from ..core.base.rules import Rule
from ..core.base.stages import Stage
from ..core.review.suggestion_review import NOT_SCORED_TEXT
from ..core.study.suggestions import Suggestion
from ..core.trust.evidence.claims import ClaimCheck
from ..core.trust.evidence.rules_check import SUPPORTED, RuleCheck
from .override_note import ask_accept_note_dialog, ask_note_dialog
from .suggestion_text import (VERDICT_COLOURS, VERDICT_MARKS, VERDICT_WORDS, check_tooltip, checks_summary,
                              clinical_units, confidence_text, confidence_tooltip, decision_text,
                              describe_flag, describe_repairs, opinion_text, rule_tooltip, source_line)

NO_MODEL_TEXT = "No model loaded — manual scoring"
OVERRIDE_TEXT, OVERRIDE_ARMED_TEXT = "Override… (O)", "Overriding… (Esc)"
LOADING_TEXT = "Loading the model…"
NO_RECORDING_TEXT = "Open a recording to see the model's suggestions"
CHIPS_PER_ROW = 4

CHECKING_TEXT = "Checking the evidence against the signal…"
CHIP_STYLE = ("QToolButton { border: 1px solid #5080b0; border-radius: 8px; padding: 2px 8px; }"
              "QToolButton[verdict=\"supported\"] { color: #30a030; }"
              "QToolButton[verdict=\"contradicted\"] { color: #e04040; }"
              "QToolButton[verdict=\"not_measurable\"] { color: #909090; }"
              "QToolButton[flagged=\"true\"] { border: 2px solid #e04040; color: #e04040; }")

#: note_provider(panel, stage, suggestion) -> the note, or None when the technologist cancels.
NoteProvider = Callable[[QWidget, Stage, Suggestion], "str | None"]

def verdict_badge(verdict: str, size: int = 14) -> QIcon:
    """A round badge in the verdict's colour with its mark (✓, ✗ or ?)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QBrush(QColor(VERDICT_COLOURS[verdict])))
    painter.drawEllipse(0, 0, size, size)
    font = painter.font()
    font.setPixelSize(int(size * 0.8))
    font.setBold(True)
    painter.setFont(font)
    painter.setPen(QColor("white"))
    painter.drawText(QRectF(0, 0, size, size), Qt.AlignmentFlag.AlignCenter, VERDICT_MARKS[verdict])
    painter.end()
    return QIcon(pixmap)


class _ClaimTips(QObject):
    """Shows a marked claim's reason when the pointer rests on it in the rationale."""

    def __init__(self, panel: "AIPanel"):
        super().__init__(panel)
        self.panel = panel

    def eventFilter(self, watched, event):  # noqa: N802 (Qt API)
        if event.type() == QEvent.Type.ToolTip:
            pos = event.pos()
            offset = self.panel.rationale.cursorForPosition(pos).position()
            text = self.panel.claim_tooltip_at(offset)
            if text:
                QToolTip.showText(event.globalPos(), text, self.panel.rationale)
            else:
                QToolTip.hideText()
            return True
        return False


class AIPanel(QWidget):
    """The right-hand dock's content. Buttons emit requests; the window does the work."""

    accept_requested = Signal()
    override_requested = Signal()
    explain_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.note_provider: NoteProvider = ask_note_dialog
        self.accept_note_provider = ask_accept_note_dialog
        self.suggestion: Suggestion | None = None
        self.chips: list[QToolButton] = []
        self.rule_checks: dict[str, RuleCheck] = {}
        self.claim_checks: list[ClaimCheck] = []
        self._chip_tips: dict[str, str] = {}
        self._has_model = False
        self._has_study = False          # Explain acts on an open study only
        self._explaining = False
        self._override_armed = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        self.model_label = self._plain_label()
        self.model_label.setStyleSheet("color: #909090;")
        self.message = self._plain_label()
        self.stage_label = self._plain_label()
        big = QFont(self.stage_label.font())
        big.setPointSize(max(big.pointSize(), 9) * 3)
        big.setBold(True)
        self.stage_label.setFont(big)
        self.confidence_label = self._plain_label()
        self.confidence_label.setWordWrap(False)
        light = QFont(big)
        light.setBold(False)
        self.confidence_label.setFont(light)
        self.confidence_label.setStyleSheet("color: #a0a0a0;")
        self.stage_row = QWidget()
        row = QHBoxLayout(self.stage_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.stage_label)
        row.addWidget(self.confidence_label)
        row.addStretch(1)
        self.source_label = self._plain_label()
        self.source_label.setStyleSheet("color: #60a0e0;")
        self.opinion_label = self._plain_label()           # the second opinion (YASA)
        self.opinion_label.setStyleSheet("color: #40c0a0;")
        self.opinion_label.hide()
        self.decision_label = self._plain_label()          # the technologist's own decision
        self.decision_label.setStyleSheet("color: #40b040;")
        self.decision_label.hide()
        self.chip_box = QWidget()
        self.chip_layout = QGridLayout(self.chip_box)
        self.chip_layout.setContentsMargins(0, 0, 0, 0)
        self.chip_layout.setAlignment(Qt.AlignmentFlag.AlignLeft)
        self.flags_label = self._plain_label()
        self.flags_label.setStyleSheet("color: #e0a040;")
        self.checks_label = self._plain_label()
        self.checks_label.setStyleSheet("color: #a0a0a0;")
        self.rationale = QTextEdit()
        self.rationale.setReadOnly(True)
        self.rationale.setAcceptRichText(False)
        self.rationale.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.rationale.setPlaceholderText("No rationale yet: Explain (E) asks the model why.")
        self.rationale.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.rationale.setMouseTracking(True)
        self._claim_tips = _ClaimTips(self)
        self.rationale.viewport().installEventFilter(self._claim_tips)
        self.armed_label = self._plain_label()
        self.armed_label.setText("Override: press W, 1, 2, 3 or R for your stage (Esc cancels)")
        self.armed_label.setStyleSheet("color: #e0a040;")
        # wraps to the width the panel has, never asks for more (pressing O keeps the layout)
        self.armed_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.armed_label.hide()
        self.accept_button = QPushButton("Accept (Enter)")
        self.override_button = QPushButton(OVERRIDE_TEXT)
        self.explain_button = QPushButton("Explain (E)")
        for button, signal in ((self.accept_button, self.accept_requested),
                               (self.override_button, self.override_requested),
                               (self.explain_button, self.explain_requested)):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)   # keys go to the window's shortcuts
            # a label that changes (Override / Overriding) never widens the panel
            button.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        widths = []
        for text in (OVERRIDE_ARMED_TEXT, self.override_button.text()):
            self.override_button.setText(text)
            widths.append(self.override_button.sizeHint().width())
        for button in (self.accept_button, self.override_button, self.explain_button):
            button.setMinimumWidth(max(widths) if button is self.override_button
                                   else button.sizeHint().width())
            button.clicked.connect(lambda _=False, s=signal: s.emit())
        buttons = QHBoxLayout()
        for button in (self.accept_button, self.override_button, self.explain_button):
            buttons.addWidget(button)
        for widget in (self.model_label, self.decision_label, self.message, self.stage_row,
                       self.source_label, self.opinion_label, self.chip_box,
                       self.checks_label, self.flags_label):
            layout.addWidget(widget)
        layout.addWidget(self.rationale, 1)
        layout.addWidget(self.armed_label)
        layout.addLayout(buttons)
        self.set_model(None)

    @staticmethod
    def _plain_label() -> QLabel:
        label = QLabel()
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        return label

    # -- what is shown -------------------------------------------------------------------
    def text(self) -> str:
        """One line saying what the panel shows (the message, or the suggestion)."""
        if self.suggestion is None:
            return self.message.text()
        stage = self.stage_label.text()
        if self.suggestion.stage_probability is not None:
            stage += " " + self.confidence_label.text()
        rules = ", ".join(self.suggestion.rules) or "no rules"
        source = f" · {self.source_label.text()}" if self.suggestion.led else ""
        return f"Suggested {stage} · {rules}{source}"

    def set_model(self, label: str | None, model_id: str | None = None) -> None:
        """The loaded model (None: none, manual scoring)."""
        self._has_model = label is not None
        if label is None:
            self.model_label.setText("")
            self.model_label.hide()
            self.set_message(NO_MODEL_TEXT)
        else:
            short = f" · id {model_id[:12]}" if model_id else ""
            self.model_label.setText(f"Model: {label}{short}")
            self.model_label.show()
            self.set_message(NOT_SCORED_TEXT)

    def set_message(self, text: str) -> None:
        """Show a message instead of a suggestion."""
        self.suggestion = None
        self.message.setText(text)
        self.message.show()
        self.stage_row.hide()
        self.source_label.hide()
        self._set_chips([], None, [], {})
        self._clear_checks()
        self.flags_label.hide()
        self.rationale.clear()
        self.rationale.hide()
        self._explaining = False
        self._update_buttons()

    def show_suggestion(self, suggestion: Suggestion | None, rules: Mapping[str, Rule],
                        rationale_flags: tuple[str, ...] = ()) -> None:
        """The model's answer for the epoch on screen (None: it has not scored it yet).

        ``rationale_flags``: those of ``suggestion.flags`` that only the rationale answer has
        (a merged suggestion: stage and rules from the fast answer, reasoning from the other);
        they are shown as the rationale answer's and do not flag the fast answer's rule chips.
        """
        if suggestion is None:
            self.set_message(NOT_SCORED_TEXT if self._has_model else NO_MODEL_TEXT)
            return
        self.suggestion = suggestion
        self._clear_checks()
        self.message.hide()
        if suggestion.stage is not None:
            self.stage_label.setText(suggestion.stage.label)
            self.confidence_label.setText(confidence_text(suggestion))
        else:
            self.stage_label.setText(f"? ({suggestion.stage_text or 'no stage'})")
            self.confidence_label.setText("")
        tip = confidence_tooltip(suggestion)
        self.stage_label.setToolTip(tip)
        self.confidence_label.setToolTip(tip)
        self.stage_row.show()
        self.source_label.setText(source_line(suggestion))
        self.source_label.setVisible(suggestion.led)
        own_flags = [f for f in suggestion.flags if f not in rationale_flags]
        self._set_chips(list(suggestion.rules), suggestion, own_flags, rules)
        notes = []
        repaired = describe_repairs(suggestion.repaired)
        if repaired:
            notes.append(repaired)
        notes += [describe_flag(f, suggestion) for f in own_flags]
        notes += ["rationale answer: " + describe_flag(f, suggestion, from_rationale=True)
                  for f in suggestion.flags if f in rationale_flags]
        self.flags_label.setText("\n".join(notes))
        self.flags_label.setVisible(bool(notes))
        if suggestion.rationale is not None:
            # plain text, never HTML; µV as a technologist writes it (the same length)
            self.rationale.setPlainText(clinical_units(suggestion.rationale))
            self._explaining = False
        else:
            self.rationale.clear()
        self.rationale.show()
        self._update_buttons()

    def _set_chips(self, rule_ids: list[str], suggestion: Suggestion | None, flags: list[str],
                   rules: Mapping[str, Rule]) -> None:
        for chip in self.chips:
            self.chip_layout.removeWidget(chip)
            chip.deleteLater()
        self.chips = []
        flagged_ids = set()
        for flag in flags:
            name, _, detail = flag.partition(":")
            if name in ("unknown_rule", "rule_stage_mismatch"):
                flagged_ids.add(detail)
        for i, rule_id in enumerate(rule_ids):
            rule = rules.get(rule_id)
            stage = suggestion.model_reading if suggestion is not None else None   # its rules
            flagged = (rule is None or rule_id in flagged_ids
                       or (stage is not None and not rule.fits(stage)))
            chip = QToolButton()
            chip.setText(rule_id.replace("&", "&&"))
            chip.setToolTip(rule_tooltip(rule_id, rule))
            self._chip_tips[rule_id] = chip.toolTip()
            chip.setProperty("rule_id", rule_id)
            chip.setProperty("verdict", "")
            chip.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            chip.setProperty("flagged", flagged)
            chip.setStyleSheet(CHIP_STYLE)
            chip.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            chip.setAutoRaise(False)
            self.chip_layout.addWidget(chip, i // CHIPS_PER_ROW, i % CHIPS_PER_ROW)
            self.chips.append(chip)
        self.chip_box.setVisible(bool(self.chips))

    # -- evidence checks ------------------------------------------------------------------
    def _clear_checks(self) -> None:
        self.rule_checks, self.claim_checks = {}, []
        self.checks_label.clear()
        self.checks_label.hide()
        for chip in self.chips:
            chip.setIcon(QIcon())
            chip.setProperty("verdict", "")
            chip.setToolTip(self._chip_tips.get(chip.property("rule_id"), chip.toolTip()))

    def set_checking(self) -> None:
        """The signal of the epoch on screen is still being measured."""
        if self.suggestion is not None and (self.suggestion.rules or self.suggestion.rationale):
            self.checks_label.setText(CHECKING_TEXT)
            self.checks_label.show()

    def set_evidence_checks(self, rule_checks, claim_checks) -> None:
        """Badge each chip with its rule's check and mark the rationale's checked claims."""
        self._clear_checks()
        self.rule_checks = {c.rule_id: c for c in rule_checks}
        self.claim_checks = list(claim_checks)
        for chip in self.chips:
            rule_id = chip.property("rule_id")
            check = self.rule_checks.get(rule_id)
            if check is None:
                continue
            chip.setIcon(verdict_badge(check.verdict))
            chip.setProperty("verdict", check.verdict)
            chip.setToolTip(self._chip_tips.get(rule_id, "") + check_tooltip(check))
            chip.style().unpolish(chip)   # the stylesheet colours by the new property
            chip.style().polish(chip)
        self._mark_claims()
        summary = checks_summary(list(self.rule_checks.values()), self.claim_checks)
        self.checks_label.setText(summary)
        self.checks_label.setVisible(bool(summary))

    def _mark_claims(self) -> None:
        doc = self.rationale.document()
        cursor = QTextCursor(doc)
        cursor.select(QTextCursor.SelectionType.Document)
        cursor.setCharFormat(QTextCharFormat())
        length = len(self.rationale.toPlainText())
        for claim in self.claim_checks:
            if not 0 <= claim.start < claim.end <= length:
                continue
            fmt = QTextCharFormat()
            colour = QColor(VERDICT_COLOURS[claim.verdict])
            fmt.setForeground(colour)
            fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline
                                  if claim.verdict == SUPPORTED
                                  else QTextCharFormat.UnderlineStyle.WaveUnderline)
            fmt.setUnderlineColor(colour)
            fmt.setToolTip(self._claim_text(claim))
            cursor.setPosition(claim.start)
            cursor.setPosition(claim.end, QTextCursor.MoveMode.KeepAnchor)
            cursor.setCharFormat(fmt)

    @staticmethod
    def _claim_text(claim: ClaimCheck) -> str:
        return f"{VERDICT_MARKS[claim.verdict]} {VERDICT_WORDS[claim.verdict]}: {claim.reason}"

    def claim_tooltip_at(self, offset: int) -> str | None:
        """The reason shown for the rationale character at ``offset`` (None: no claim there)."""
        for claim in self.claim_checks:
            if claim.start <= offset < claim.end:
                return self._claim_text(claim)
        return None

    # -- states while the technologist acts ---------------------------------------------
    def set_explaining(self, on: bool) -> None:
        self._explaining = bool(on)
        if on:
            self.rationale.show()
            self.rationale.setPlaceholderText("Asking the model why…")
        else:
            self.rationale.setPlaceholderText("No rationale yet: Explain (E) asks the model why.")
        self._update_buttons()

    @property
    def explaining(self) -> bool:
        return self._explaining

    def set_override_armed(self, on: bool) -> None:
        """Override armed: the button says so in as few words as before (the panel keeps its
        width) and the wrapped line above the buttons says which keys to press."""
        self._override_armed = bool(on)
        self.override_button.setText(OVERRIDE_ARMED_TEXT if on else OVERRIDE_TEXT)
        self.armed_label.setVisible(self._override_armed)
        self._update_buttons()

    def show_opinion(self, opinion, led: bool = False) -> None:
        """The second opinion for the epoch on screen; hidden where there is none, or where it
        already leads the stage offered (the source line names it then)."""
        shown = opinion is not None and not led
        self.opinion_label.setText(opinion_text(opinion) if shown else "")
        self.opinion_label.setVisible(shown)

    def show_decision(self, decision) -> None:
        """The technologist's decision for the epoch on screen (None: not scored yet)."""
        self.decision_label.setText("" if decision is None else decision_text(decision))
        self.decision_label.setVisible(decision is not None)

    def ask_accept_note(self, suggestion: Suggestion, contradicted: str) -> str | None:
        """Why the technologist accepts a suggestion the signal contradicts: from
        ``accept_note_provider`` (a dialog unless replaced); None when cancelled."""
        return self.accept_note_provider(self, suggestion, contradicted)

    def ask_note(self, stage: Stage, suggestion: Suggestion) -> str | None:
        """Why the technologist overrides: from ``note_provider`` (a dialog unless replaced)."""
        return self.note_provider(self, stage, suggestion)

    def set_study_open(self, on: bool) -> None:
        """A study is open (the buttons act on it) or none is (they are all disabled)."""
        self._has_study = bool(on)
        self._update_buttons()

    def _update_buttons(self) -> None:
        s = self.suggestion
        self.accept_button.setEnabled(s is not None and s.stage is not None)
        self.override_button.setEnabled(s is not None)
        self.explain_button.setEnabled(self._has_model and self._has_study and not self._explaining
                                       and (s is None or s.rationale is None))
