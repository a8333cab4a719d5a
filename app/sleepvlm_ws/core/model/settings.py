"""Model settings: how the workstation runs a model pack here (CPU threads, GPU layers, context
size, rationale length) or on lab servers, and where the suggested stage comes from
(``suggested_stage_from``: the real-trained stager where it ran, else the model; see
``core.review.suggested_stage``), kept in ``model-settings.json`` in the per-user data
folder, and the one function that opens a runtime from a pack and settings (the CLI, the
evaluation and the GUI all go through ``open_runtime``).

The defaults run on a 2-core laptop: every CPU core, nothing on the GPU, the pack's own context
size. With one or more lab server addresses the model pack is still read here (prompt, rule
vocabulary) but every request goes to the servers (``remote.RemotePool``); threads, GPU layers
and context size then do not apply.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ... import paths
from ...errors import InputError
from ..base.stage_source import DEFAULT_SOURCE, SOURCES
from .remote import API_KEY_ENV, DEFAULT_TIMEOUT_S, MAX_PARALLEL, RemotePool, parse_server_urls
from .runtime import LocalRuntime

SETTINGS_FILE = "model-settings.json"
MAX_THREADS = 256
MAX_GPU_LAYERS = 999
MAX_CONTEXT = 131072
MIN_CONTEXT = 512
RATIONALE_TOKENS_DEFAULT = 1024      # as in SleepVLM's evaluation
MIN_RATIONALE_TOKENS = 16
SERVER_PARALLEL_DEFAULT = 8
MAX_SERVER_PARALLEL = MAX_PARALLEL


def cpu_count() -> int:
    """This computer's CPU cores (at least 1)."""
    return max(1, os.cpu_count() or 1)


# Accepting a suggestion whose cited rule the signal contradicts (the lab decides which):
CONFIRM = "confirm"      # a question naming the contradiction; Yes accepts, the note says so
NOTE = "note"            # a note saying why is required, as for an override
CONTRADICTED_ACCEPT = (CONFIRM, NOTE)


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
    server_model: str = ""           # the served model's name; "": the first the server lists
    suggested_stage_from: str = DEFAULT_SOURCE   # core.review.suggested_stage: stager or model
    contradicted_accept: str = CONFIRM   # accepting a stage the signal contradicts: confirm / note

    @classmethod
    def defaults(cls) -> "ModelSettings":
        return cls(threads=cpu_count())

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
            threads=clamp(self.threads, 1, MAX_THREADS, cpu_count()),
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
                            else True),
            server_model=str(self.server_model or ""),
            suggested_stage_from=(self.suggested_stage_from if self.suggested_stage_from in SOURCES
                                  else DEFAULT_SOURCE),
            contradicted_accept=(self.contradicted_accept if self.contradicted_accept
                                 in CONTRADICTED_ACCEPT else CONFIRM))

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
    """Write the settings to ``model-settings.json`` in the per-user data folder, atomically.

    Numbers are first brought into range and malformed server addresses dropped
    (``ModelSettings.checked``). An unwritable folder is not worth an error dialog: a failure to
    write is ignored.

    Parameters
    ----------
    settings : ModelSettings
        The settings to keep.
    """
    path = settings_path()
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(asdict(settings.checked()), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


SERVER_CHECK_TIMEOUT_S = 20.0           # opening: each server must list its models by then


def open_runtime(pack_dir: str | Path, settings: ModelSettings, *,
                 request_timeout_s: float = DEFAULT_TIMEOUT_S):
    """The runtime ``settings`` ask for; the pack is verified first either way.

    With lab servers: a ``RemotePool`` of them (prompt and rule vocabulary from the pack, the API
    key from ``$SLEEPVLM_WS_API_KEY``). Each server must list its models within
    ``SERVER_CHECK_TIMEOUT_S`` and all must serve the same model; when ``settings.server_model``
    names the model, no server is asked at opening. Without servers (or when the addresses are
    malformed, see ``ModelSettings.server_list``): ``LocalRuntime`` on this computer.

    Parameters
    ----------
    pack_dir : str or Path
        The model pack.
    settings : ModelSettings
        Threads, GPU layers and context size (this computer), or the servers, their model name
        and whether to send the answer grammar.
    request_timeout_s : float
        Seconds each server request may take (default ``remote.DEFAULT_TIMEOUT_S``); not used
        by ``LocalRuntime``.

    Returns
    -------
    LocalRuntime or RemotePool

    Raises
    ------
    InputError
        One line: a pack that fails verification or cannot be loaded here, or a server that
        cannot be reached, refuses the key or serves another model than the others.
    """
    servers = settings.server_list()
    if not servers:
        return LocalRuntime(pack_dir, **settings.runtime_options())
    pool = RemotePool.from_pack(servers, pack_dir, model=settings.server_model or None,
                                grammar=settings.server_grammar,
                                api_key=os.environ.get(API_KEY_ENV) or None, timeout=request_timeout_s)
    for server in pool.runtimes:     # GET /v1/models: reachable, key accepted, a model served
        server.served_model(timeout=SERVER_CHECK_TIMEOUT_S)
    pool.model_id                    # noqa: B018 - InputError unless every server serves the same model
    return pool
