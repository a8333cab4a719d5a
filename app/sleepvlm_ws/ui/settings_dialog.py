"""The model settings dialog (CPU threads, GPU layers, context size, lab server, rationale
length, where the suggested stage comes from). The settings themselves, their file and their checks are ``core.model.settings``."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QGroupBox,
                               QLabel, QLineEdit, QSpinBox, QVBoxLayout, QWidget)

from ..core.base.stage_source import MODEL, SOURCES, STAGER
from ..core.model.remote import API_KEY_ENV, parse_server_urls
from ..core.model.settings import (CONFIRM, MAX_CONTEXT, MAX_GPU_LAYERS, MAX_SERVER_PARALLEL, MAX_THREADS,
                                   MIN_RATIONALE_TOKENS, NOTE, ModelSettings, cpu_count)
from ..errors import InputError

SOURCE_CHOICES = {STAGER: "YASA (real-trained) where it can stage, else the model",
                  MODEL: "the model pack only"}
SERVER_PLACEHOLDER = "http://host:8080 — empty: run the model on this computer"


class SettingsDialog(QDialog):
    """Edit the model settings; ``settings()`` is what the dialog shows (OK saves it).

    OK with a malformed lab server address is refused: the problem is shown under the field
    and the dialog stays open (nothing is saved)."""

    def __init__(self, current: ModelSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Model settings")
        self._current = current.checked()
        layout = QVBoxLayout(self)

        here = QGroupBox("This computer (the model runs here)")
        form = QFormLayout(here)
        self.threads = QSpinBox()
        self.threads.setRange(1, MAX_THREADS)
        self.threads.setToolTip(f"CPU threads for the model (this computer has {cpu_count()})")
        self.gpu_layers = QSpinBox()
        self.gpu_layers.setRange(-1, MAX_GPU_LAYERS)
        self.gpu_layers.setSpecialValueText("all")
        self.gpu_layers.setToolTip("Model layers on the GPU: 0 = CPU only, -1 = all")
        self.context_size = QSpinBox()
        self.context_size.setRange(0, MAX_CONTEXT)
        self.context_size.setSingleStep(1024)
        self.context_size.setSpecialValueText("pack default")
        form.addRow("CPU threads", self.threads)
        form.addRow("GPU layers", self.gpu_layers)
        form.addRow("Context size (tokens)", self.context_size)
        layout.addWidget(here)

        lab = QGroupBox("Lab server")
        form = QFormLayout(lab)
        self.server_urls = QLineEdit()
        self.server_urls.setPlaceholderText(SERVER_PLACEHOLDER)
        self.server_urls.setToolTip("OpenAI-compatible servers running this pack's model "
                                    "(sleepvlm-ws serve, llama-server, vLLM), separated by commas "
                                    "or spaces; "
                                    f"an API key is read from ${API_KEY_ENV}")
        self.server_error = QLabel()
        self.server_error.setStyleSheet("color: #b00020;")
        self.server_error.setWordWrap(True)
        self.server_error.hide()
        self.server_urls.textEdited.connect(lambda _text: self.server_error.hide())
        self.server_parallel = QSpinBox()
        self.server_parallel.setRange(1, MAX_SERVER_PARALLEL)
        self.server_parallel.setToolTip("Requests in flight at once (match the servers' slots)")
        self.server_grammar = QCheckBox("Send the answer grammar")
        self.server_grammar.setToolTip("Off lets the server pick tokens on the GPU "
                                       "(sleepvlm-ws serve --gpu-sampling, llama-server -bs); "
                                       "answers that leave the schema are still flagged")
        form.addRow("Servers", self.server_urls)
        form.addRow("", self.server_error)
        form.addRow("Requests in flight", self.server_parallel)
        form.addRow(self.server_grammar)
        layout.addWidget(lab)

        form = QFormLayout()
        self.rationale_tokens = QSpinBox()
        self.rationale_tokens.setRange(MIN_RATIONALE_TOKENS, 8192)
        self.rationale_tokens.setToolTip("Longest rationale the model may write (tokens)")
        self.rationale_whole_night = QCheckBox("Score night also writes every epoch's rationale "
                                               "(several times slower)")
        self.stage_source = QComboBox()
        for source in SOURCES:
            self.stage_source.addItem(SOURCE_CHOICES[source], source)
        self.stage_source.setToolTip(
            "On real EEG YASA's stager (trained on real nights) agrees with experts more often "
            "than the default model pack (see the model card); the model's rules and rationale "
            "are shown either way")
        form.addRow("Rationale length (tokens)", self.rationale_tokens)
        form.addRow(self.rationale_whole_night)
        form.addRow("Suggested stage from", self.stage_source)
        self.contradicted_accept = QComboBox()
        self.contradicted_accept.addItem("Ask to confirm (the note says so)", CONFIRM)
        self.contradicted_accept.addItem("Require a note saying why", NOTE)
        self.contradicted_accept.setToolTip("When Accept takes a suggestion citing a rule the "
                                            "measured signal contradicts (the ✗ badge)")
        form.addRow("Accepting a contradicted suggestion", self.contradicted_accept)
        layout.addLayout(form)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            lambda: self._show(ModelSettings.defaults()))
        self.buttons = buttons
        layout.addWidget(buttons)
        self._show(self._current)

    def _show(self, settings: ModelSettings) -> None:
        self.threads.setValue(settings.threads)
        self.gpu_layers.setValue(settings.gpu_layers)
        self.context_size.setValue(settings.context_size)
        self.server_urls.setText(settings.server_urls)
        self.server_error.hide()
        self.server_parallel.setValue(settings.server_parallel)
        self.server_grammar.setChecked(settings.server_grammar)
        self.rationale_tokens.setValue(settings.rationale_tokens)
        self.rationale_whole_night.setChecked(settings.rationale_whole_night)
        self.stage_source.setCurrentIndex(max(0, self.stage_source.findData(
            settings.suggested_stage_from)))
        self.contradicted_accept.setCurrentIndex(max(0, self.contradicted_accept.findData(
            settings.contradicted_accept)))

    def server_problem(self) -> str:
        """Why the server field cannot be saved (one line), or "" when it can."""
        try:
            parse_server_urls(self.server_urls.text())
        except InputError as error:
            return str(error)
        return ""

    def accept(self) -> None:
        problem = self.server_problem()
        if problem:
            self.server_error.setText(problem)
            self.server_error.show()
            self.server_urls.setFocus()
            return
        super().accept()

    def settings(self) -> ModelSettings:
        return replace(self._current, threads=self.threads.value(),
                       gpu_layers=self.gpu_layers.value(),
                       context_size=self.context_size.value(),
                       server_urls=self.server_urls.text(),
                       server_parallel=self.server_parallel.value(),
                       server_grammar=self.server_grammar.isChecked(),
                       rationale_tokens=self.rationale_tokens.value(),
                       rationale_whole_night=self.rationale_whole_night.isChecked(),
                       suggested_stage_from=self.stage_source.currentData(),
                       contradicted_accept=self.contradicted_accept.currentData()).checked()
