"""Model settings (CPU threads, GPU layers, context size, lab server, rationale length) and
their dialog.

The settings live in ``model-settings.json`` in the per-user data folder. The defaults run on a
2-core laptop: every CPU core, nothing on the GPU, the pack's own context size. With one or more
lab server addresses the model pack is still read here (prompt, rule vocabulary) but every
request goes to the servers (``core.remote.RemotePool``); threads, GPU layers and context size
then do not apply.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace

from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QFormLayout, QGroupBox,
                               QLabel, QLineEdit, QSpinBox, QVBoxLayout, QWidget)

from .. import paths
from ..core.remote import API_KEY_ENV, MAX_PARALLEL, parse_server_urls
from ..errors import InputError

SETTINGS_FILE = "model-settings.json"
MAX_THREADS = 256
MAX_GPU_LAYERS = 999
MAX_CONTEXT = 131072
MIN_CONTEXT = 512
RATIONALE_TOKENS_DEFAULT = 1024      # as in SleepVLM's evaluation
MIN_RATIONALE_TOKENS = 16
SERVER_PARALLEL_DEFAULT = 8
MAX_SERVER_PARALLEL = MAX_PARALLEL
SERVER_PLACEHOLDER = "http://host:8080 — empty: run the model on this computer"


def _cpu_count() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ModelSettings:
    """How the model runs here. ``context_size`` 0: the pack's own; ``gpu_layers`` -1: all."""

    threads: int = 0                 # 0 until resolved: see ``defaults()``
    gpu_layers: int = 0
    context_size: int = 0
    rationale_tokens: int = RATIONALE_TOKENS_DEFAULT
    rationale_whole_night: bool = False   # Score night also asks every epoch's rationale (slow)
    last_pack: str = ""              # the folder offered by "Load model pack…"
    server_urls: str = ""            # lab servers, comma/space separated; "": the embedded model
    server_parallel: int = SERVER_PARALLEL_DEFAULT   # requests in flight at once (servers)
    server_grammar: bool = True      # send the answer grammar (off: the server may batch-sample
                                     # on the GPU; the tolerant parser flags off-schema answers)

    @classmethod
    def defaults(cls) -> "ModelSettings":
        return cls(threads=_cpu_count())

    def checked(self) -> "ModelSettings":
        """The same settings with every number brought into its allowed range; server
        addresses that are not all well-formed are dropped (the embedded model then runs)."""
        def clamp(value, low, high, fallback):
            try:
                number = int(value)
            except (TypeError, ValueError, OverflowError):
                return fallback
            return max(low, min(high, number))

        context = clamp(self.context_size, 0, MAX_CONTEXT, 0)
        servers = ", ".join(self.server_list())
        return replace(
            self,
            threads=clamp(self.threads, 1, MAX_THREADS, _cpu_count()),
            gpu_layers=clamp(self.gpu_layers, -1, MAX_GPU_LAYERS, 0),
            context_size=0 if context == 0 else max(MIN_CONTEXT, context),
            rationale_tokens=clamp(self.rationale_tokens, MIN_RATIONALE_TOKENS, 8192,
                                   RATIONALE_TOKENS_DEFAULT),
            rationale_whole_night=bool(self.rationale_whole_night),
            last_pack=str(self.last_pack or ""),
            server_urls=servers,
            server_parallel=clamp(self.server_parallel, 1, MAX_SERVER_PARALLEL,
                                  SERVER_PARALLEL_DEFAULT),
            server_grammar=(self.server_grammar if isinstance(self.server_grammar, bool)
                            else True))

    def server_list(self) -> list[str]:
        """The lab servers to send requests to; [] runs the model on this computer."""
        try:
            return parse_server_urls(self.server_urls)
        except InputError:
            return []

    def runtime_options(self) -> dict:
        """Keyword arguments for ``LocalRuntime``."""
        return {"n_threads": self.threads, "n_gpu_layers": self.gpu_layers,
                "n_ctx": self.context_size or None}


def settings_path():
    return paths.user_data_dir() / SETTINGS_FILE


def load_settings() -> ModelSettings:
    """The saved settings (unknown keys ignored, bad values reset); defaults if none saved."""
    base = ModelSettings.defaults()
    try:
        raw = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return base
    if not isinstance(raw, dict):
        return base
    known = {f.name for f in fields(ModelSettings)}
    return replace(base, **{k: v for k, v in raw.items() if k in known}).checked()


def save_settings(settings: ModelSettings) -> None:
    """Write the settings (atomically); an unwritable folder is not worth an error dialog."""
    path = settings_path()
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(asdict(settings.checked()), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


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
        self.threads.setToolTip(f"CPU threads for the model (this computer has {_cpu_count()})")
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
        form.addRow("Rationale length (tokens)", self.rationale_tokens)
        form.addRow(self.rationale_whole_night)
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
                       rationale_whole_night=self.rationale_whole_night.isChecked()).checked()
