"""A scoring run's progress in the status bar: the bar, the time left, Pause and Cancel.

Shown while a run goes on, hidden otherwise. The time left is the median of the last
estimates the run gave (``ScoringRun``'s moving average of recent epochs): answers that arrive
in bursts from a lab server, or a machine busy with something else, swing one estimate, and the
median settles where the run really is. The label names the pass the run is in (the stages of
the whole night first, then, when asked for, every epoch's rationale), so a slower second pass
does not look like a run that slowed down.
"""

from __future__ import annotations

from collections import deque
from statistics import median

from PySide6.QtWidgets import QLabel, QProgressBar, QToolButton

ETA_MEDIAN_OF = 9            # estimates the shown ETA is the median of
PASS_WORDS = {"fast": "stage pass", "rationale": "rationale pass"}


def eta_text(seconds: float | None) -> str:
    """``about 3 min left`` (or ``estimating…`` before the first epochs are timed)."""
    if seconds is None:
        return "estimating…"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"about {int(round(seconds))} s left"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60:02d} min left"


def settled_eta(recent) -> float | None:
    """The ETA shown: the median of the last estimates; None before the first."""
    return float(median(recent)) if recent else None


def summary_text(summary) -> str:
    """What a finished run did, in one status-bar line (``RunSummary``)."""
    stored = sum(summary.stored.values())
    text = {"completed": "AI scoring finished", "cancelled": "AI scoring cancelled"}.get(
        summary.outcome, f"AI scoring {summary.outcome}")
    text += f": {summary.epochs_done} of {summary.epochs_total} epochs done, {stored} stored"
    if summary.skipped_no_signal:
        text += f", {summary.skipped_no_signal} without signal skipped"
    return text


class RunProgress:
    """The status-bar widgets of a run: ``bar``, ``eta_label``, Pause and Cancel buttons."""

    def __init__(self):
        self.bar = QProgressBar()
        self.bar.setFormat("AI %v / %m epochs")
        # wide enough for a long night's "AI 1234 / 1234 epochs", never clipped, never stretched
        self.bar.setFixedWidth(self.bar.fontMetrics().horizontalAdvance("AI 8888 / 8888 epochs") + 48)
        self.eta_label = QLabel()
        self.pause_button = QToolButton()
        self.cancel_button = QToolButton()
        self.recent: deque = deque(maxlen=ETA_MEDIAN_OF)
        self.pass_words = ""
        self.widgets = (self.bar, self.eta_label, self.pause_button, self.cancel_button)

    def install(self, status_bar, pause_action, cancel_action) -> None:
        """Put the widgets in ``status_bar``, hidden until a run starts."""
        self.pause_button.setDefaultAction(pause_action)
        self.cancel_button.setDefaultAction(cancel_action)
        for widget in self.widgets:
            status_bar.addPermanentWidget(widget)
            widget.hide()

    def start(self, n_epochs: int) -> None:
        """A run starts over ``n_epochs``: the widgets show, the estimates start afresh."""
        self.bar.setRange(0, max(1, n_epochs))
        self.bar.setValue(0)
        self.eta_label.setText("starting…")
        self.recent.clear()
        self.pass_words = ""
        for widget in self.widgets:
            widget.show()

    def set_pass(self, pass_name: str) -> None:
        """The run went on to ``pass_name`` (FAST or RATIONALE): named beside the time left,
        whose estimates start afresh (the passes go at different speeds)."""
        self.pass_words = PASS_WORDS.get(pass_name, pass_name)
        self.recent.clear()

    def update(self, done: int, total: int, eta_s, *, held: bool = False) -> None:
        """The run's progress: ``done`` of ``total`` epochs, its estimate of seconds left."""
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done)
        if eta_s is not None:
            self.recent.append(float(eta_s))
        if not held:
            text = eta_text(settled_eta(self.recent)) if done < total else "finishing…"
            self.eta_label.setText(f"{self.pass_words}: {text}" if self.pass_words else text)

    def end(self) -> None:
        """The run ended: the widgets hide."""
        for widget in self.widgets:
            widget.hide()
