"""``sleepvlm-ws serve``: a model pack behind an OpenAI-compatible server for the lab.

Many requests decoded together in one llama.cpp context (``core.server.batch_engine``), each epoch
image encoded once, the system prompt's KV shared; the workstation (``score --server``, or the
GUI's Lab server settings) and any OpenAI-style client talk to it like to llama-server."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from ..core.model.model_pack import verify_pack
from ..core.model.remote import API_KEY_ENV, _check_api_key
from ..core.server.batch_engine import MAX_SLOTS, BatchEngine
from ..core.server.lab_server import LabServer
from ..errors import InputError
from .common import NO_DEFAULT_PACK, default_pack, positive_int, positive_int_at_most


def cmd_serve(args) -> int:
    pack = Path(args.model) if args.model else default_pack()
    if pack is None:
        raise InputError(None, NO_DEFAULT_PACK)
    api_key = _check_api_key(os.environ.get(API_KEY_ENV))
    if api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        raise InputError(None, f"serving on {args.host} (not this machine only) needs an API key: "
                               f"set ${API_KEY_ENV}")
    manifest = verify_pack(pack)
    try:                                   # listen first: a port in use is found before loading
        server = LabServer(None, args.host, args.port, alias=args.alias or manifest.name,
                           api_key=api_key)
    except OSError as exc:
        raise InputError(None, f"cannot listen on {args.host}:{args.port} "
                               f"({exc.strerror or exc})") from None
    try:
        engine = BatchEngine(pack, slots=args.slots, ctx_per_slot=args.ctx_per_slot,
                             n_gpu_layers=args.gpu_layers, n_threads=args.threads,
                             gpu_sampling=args.gpu_sampling, unified_kv=args.unified_kv)
    except BaseException:
        server.server_close()
        raise
    server.engine = engine
    print(f"sleepvlm-ws serve: {engine.label} at {server.url} ({args.slots} slots, "
          f"{engine.ctx_per_slot} tokens each, model name {server.alias!r}"
          f"{', GPU sampling' if args.gpu_sampling else ''}); Ctrl-C stops",
          file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()
    return 0


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {value}")
    return value


def add_serve_command(sub) -> None:
    s = sub.add_parser("serve", help="serve a model pack to the lab (OpenAI-compatible, many "
                                      "requests decoded together)")
    s.add_argument("--model", metavar="PACK", help="model pack folder (default: the default pack)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; any other "
                        "needs an API key in $SLEEPVLM_WS_API_KEY)")
    s.add_argument("--port", type=_port, default=8080, help="default 8080; 0: any free port")
    s.add_argument("--slots", type=positive_int_at_most(MAX_SLOTS), default=8, metavar="N",
                   help="requests decoded together (score --parallel should match)")
    s.add_argument("--ctx-per-slot", type=positive_int, metavar="TOKENS",
                   help="KV cells per request (default: the pack's context size)")
    s.add_argument("--gpu-layers", type=int, default=0, metavar="N",
                   help="model layers on the GPU (-1: all)")
    s.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads")
    s.add_argument("--gpu-sampling", action="store_true",
                   help="pick tokens on the GPU (faster; requests must carry no grammar: "
                        "score --no-grammar)")
    s.add_argument("--unified-kv", action="store_true",
                   help="one KV buffer where all slots share the prompt's cells (less GPU memory, "
                        "slower) instead of a buffer per slot with the prompt copied in")
    s.add_argument("--alias", metavar="NAME", help="the model name clients see (default: the pack's)")
    s.set_defaults(func=cmd_serve)
