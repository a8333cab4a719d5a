"""The argument parser of every command (imported by ``main`` after llama_cpp, see there)."""

from __future__ import annotations

import argparse

from .. import __version__
from ..core.model.remote import API_KEY_ENV, MAX_PARALLEL
from ..paths import default_scorer
from .common import gui_options, positive_int, positive_int_at_most
from .evaluate import add_evaluate_command
from .model_commands import cmd_model_convert, cmd_model_list, cmd_model_verify
from .report import add_report_command
from .score import cmd_score
from .scorer_commands import add_scorers_command
from .serve import add_serve_command
from .study_commands import cmd_audit_verify, cmd_export, cmd_import, cmd_info, cmd_synth
from .window import cmd_demo, cmd_open


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sleepvlm-ws", description="SleepVLM Workstation")
    p.add_argument("--version", action="version", version=f"sleepvlm-ws {__version__}")
    p.add_argument("--scorer", default=default_scorer(), help="scorer name written into decisions")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="open the workstation on the bundled demo study")
    s.add_argument("--prepare-only", action="store_true", help="only generate the demo recording; print its path")
    gui_options(s)
    s.add_argument("--no-model", action="store_true",
                   help="do not load the default model pack (manual scoring only)")
    s.add_argument("--no-score", action="store_true",
                   help="load the model but do not start scoring the night")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("open", help="open the workstation (optionally on a recording): the default "
                                    "model pack is loaded and scores what the study still lacks")
    s.add_argument("recording", nargs="?")
    s.add_argument("--study", help="study file (default: next to the recording)")
    gui_options(s)
    s.add_argument("--no-model", action="store_true",
                   help="do not load the default model pack (manual scoring only)")
    s.add_argument("--no-score", action="store_true",
                   help="load the model but do not resume scoring the night")
    s.set_defaults(func=cmd_open)

    s = sub.add_parser("info", help="channels, rates, duration, montage mapping, epochs")
    s.add_argument("recording")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("import", help="import a hypnogram into a study (recorded as 'imported' decisions)")
    s.add_argument("study", help="study file, or a recording (its study is used or created)")
    s.add_argument("hypnogram")
    s.add_argument("--format", choices=["tsv", "csv", "edf", "xml", "json"])
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("export", help="export the scored hypnogram")
    s.add_argument("study", help="study file, or a recording (the study beside it)")
    s.add_argument("--format", required=True, choices=["tsv", "csv", "edf", "xml", "json"])
    s.add_argument("--out", required=True)
    s.add_argument("--deidentify", action="store_true", help="leave out patient and recording identifiers")
    s.set_defaults(func=cmd_export)
    add_scorers_command(sub)
    add_report_command(sub)
    add_evaluate_command(sub)
    add_serve_command(sub)

    s = sub.add_parser("audit", help="audit trail tools")
    asub = s.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="exit 0 if the audit chain is intact, 1 naming the first broken event")
    v.add_argument("study", help="study file, or a recording (the study beside it)")
    v.set_defaults(func=cmd_audit_verify)

    s = sub.add_parser("score", help="AI scoring: store the model's suggestion for every epoch "
                                      "(resumes where a previous run stopped)")
    s.add_argument("recording")
    s.add_argument("--model", metavar="PACK", help="model pack folder (default: the default pack)")
    s.add_argument("--study", help="study file (default: next to the recording)")
    s.add_argument("--rationale", choices=["none", "all"], default="none",
                   help="'all': a second pass adds the written reasoning (slow)")
    s.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for the model")
    s.add_argument("--gpu-layers", type=int, default=0, metavar="N",
                   help="model layers to put on the GPU (-1: all)")
    s.add_argument("--server", metavar="URL[,URL...]",
                   help="send the requests to an OpenAI-compatible server (sleepvlm-ws serve, "
                        "llama-server, vLLM) "
                        "instead of the embedded runtime, or to several serving the same model; "
                        f"the pack gives the prompt and rules; an API key is read from ${API_KEY_ENV}")
    s.add_argument("--server-model", metavar="NAME",
                   help="the served model's name (default: the first the server lists)")
    s.add_argument("--parallel", type=positive_int_at_most(MAX_PARALLEL), default=1, metavar="N",
                   help="requests in flight at once with --server (match the server's slots)")
    s.add_argument("--no-grammar", action="store_true",
                   help="with --server: send no answer grammar (the server can then pick tokens "
                        "on the GPU: serve --gpu-sampling, llama-server -bs); answers are still "
                        "parsed and anything off-schema flagged")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("synth", help="write a synthetic overnight PSG (EDF+ with its hypnogram)")
    s.add_argument("out")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--hours", type=float, default=8.0)
    s.add_argument("--fs", type=float, default=256.0)
    s.add_argument("--no-hypnogram", action="store_true")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("model", help="model packs: list, verify, convert a checkpoint")
    msub = s.add_subparsers(dest="model_command", required=True)
    m = msub.add_parser("list", help="the model packs found (repository models/, user packs/, "
                                     "$SLEEPVLM_WS_PACKS)")
    m.add_argument("--dir", action="append", metavar="FOLDER", help="look here instead (repeatable)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_model_list)
    m = msub.add_parser("verify", help="exit 0 if every file of the pack matches its manifest, "
                                       "2 naming the first that does not")
    m.add_argument("pack", help="model pack folder")
    m.add_argument("--no-cache", action="store_true", help="rehash every file (ignore remembered hashes)")
    m.set_defaults(func=cmd_model_verify)
    m = msub.add_parser("convert", help="convert a Hugging Face Qwen2.5-VL checkpoint (e.g. SleepVLM-3B) "
                                        "into a model pack")
    m.add_argument("hf_dir", metavar="HF_DIR", help="checkpoint folder (config.json, *.safetensors, tokenizer)")
    m.add_argument("--name", required=True, help="the pack's name")
    m.add_argument("--quant", default="Q4_K_M", type=str.upper,
                   choices=["Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q6_K", "Q8_0", "F16"],
                   help="language model quantisation (default Q4_K_M; the projector stays f16)")
    m.add_argument("--prompt", metavar="FILE", help="system prompt the model was trained with "
                                                    "(default: the workstation's own)")
    m.add_argument("--licence", help="licence of the weights (default: from the checkpoint README)")
    m.add_argument("--pack-version", default="1", metavar="VERSION", help="the pack's version (default 1)")
    m.add_argument("--out", metavar="DIR", help="pack folder to create (default: the user's packs/NAME)")
    m.set_defaults(func=cmd_model_convert)
    return p
