"""``sleepvlm-ws``: the workstation's command line.

Exit codes: 0 success, 1 a check that ran and failed (``audit verify``), 2 bad input (one line
on stderr naming the file and the problem), 3 an internal error (one line; details in the log).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .errors import InputError
from .paths import default_scorer

log = logging.getLogger("sleepvlm_ws")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def _study_for(path: str, scorer: str, *, create: bool):
    """Open a study file; a recording path stands for the study next to it (created if asked)."""
    from .core.study import STUDY_SUFFIX, Study, default_study_path

    p = Path(path)
    if p.suffix == STUDY_SUFFIX or (not create and not default_study_path(p).exists()):
        return Study.open(p)
    if default_study_path(p).exists():
        return Study.open(default_study_path(p))
    from .core.session import ScoringSession

    session = ScoringSession.open(p, scorer=scorer)
    session.recording.close()
    return session.study


# -- commands -----------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .demo import ensure_demo_recording

    path = ensure_demo_recording(progress=lambda m: print(m, file=sys.stderr))
    if args.prepare_only:
        print(path)
        return EXIT_OK
    from .ui.app import run_gui

    model = args.model
    if model is None and not args.no_model:
        pack = _default_pack()
        model = str(pack) if pack else None
    return run_gui(str(path), scorer=args.scorer, screenshot=args.screenshot,
                   exit_after=args.exit_after, model=model, score=model is not None and not args.no_score)


def cmd_open(args) -> int:
    from .ui.app import run_gui

    return run_gui(args.recording, study=args.study, scorer=args.scorer,
                   screenshot=args.screenshot, exit_after=args.exit_after, model=args.model)


def _printable(text: str) -> str:
    """``text`` with control characters shown as escapes (never sent raw to a terminal)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def cmd_info(args) -> int:
    from .core.montage import auto_montage, montage_summary
    from .core.recording import Recording

    rec = Recording.open(args.recording)
    try:
        info = rec.info_dict()
        montage = auto_montage([c.label for c in rec.channels])
        info["montage"] = {role: (None if d is None else d.name) for role, d in montage.roles.items()}
        info["missing_roles"] = montage.missing
        if args.json:
            print(json.dumps(info, indent=2, ensure_ascii=False))
            return EXIT_OK
        print(f"Recording  {info['path']}")
        print(f"Format     {info['file_type']} (read with {info['backend']})")
        print(f"Start      {info.get('start') or 'unknown'}")
        print(f"Duration   {info['duration_s'] / 3600:.2f} h ({info['duration_s']:.0f} s), "
              f"{info['n_epochs']} epochs of 30 s")
        print(f"Channels   {len(info['channels'])}")
        for ch in info["channels"]:   # labels come from the file: control characters escaped
            print(f"  {_printable(ch['label']):<24} {ch['fs']:>7g} Hz  {_printable(ch['unit'])}")
        print("Montage")
        for line in montage_summary(montage):
            print(f"  {_printable(line)}")
    finally:
        rec.close()
    return EXIT_OK


def cmd_import(args) -> int:
    from .core.formats import import_hypnogram
    from .core.study import IMPORTED

    study = _study_for(args.study, args.scorer, create=True)
    try:
        hyp = import_hypnogram(args.hypnogram, fmt=args.format, n_epochs=study.n_epochs)
        current = study.stages()
        changes = [(i, s) for i, s in enumerate(hyp.stages[: study.n_epochs]) if s is not current[i]]
        note = "imported hypnogram"  # the file name goes into the audit event, which de-identification strips
        study.score_many(changes, scorer=args.scorer, source=IMPORTED, note=note)
        study.record_event("import", {"file": str(Path(args.hypnogram).resolve()),
                                      "epochs_changed": len(changes),
                                      "warnings": list(getattr(hyp, "warnings", []) or [])},
                           actor=args.scorer)
        for w in getattr(hyp, "warnings", []) or []:
            print(f"warning: {w}", file=sys.stderr)
        print(f"{study.path}: imported {len(changes)} epoch stage(s) from {args.hypnogram}")
    finally:
        study.close()
    return EXIT_OK


def cmd_export(args) -> int:
    from .core.export import export_study

    study = _study_for(args.study, args.scorer, create=False)
    try:
        out = export_study(study, args.format, args.out, scorer=args.scorer,
                           deidentify=args.deidentify)
    finally:
        study.close()
    print(out)
    return EXIT_OK


def cmd_audit_verify(args) -> int:
    from .core.audit import verify

    result = verify(args.study)
    if result.ok:
        print(f"{args.study}: audit trail intact ({result.reason})")
        return EXIT_OK
    print(f"{args.study}: {result.reason}", file=sys.stderr)
    return EXIT_FAILED


def cmd_synth(args) -> int:
    from .core.synth import generate_night, write_night_edf

    night = generate_night(seed=args.seed, hours=args.hours, fs=args.fs)
    write_night_edf(night, args.out, with_hypnogram=not args.no_hypnogram)
    print(args.out)
    return EXIT_OK


NO_DEFAULT_PACK = "no model pack given and no default pack installed"


def _default_pack() -> Path | None:
    """The default model pack: a pack folder named ``default`` in a pack search folder
    (the repository's ``models/``, the user's ``packs/``, $SLEEPVLM_WS_PACKS)."""
    from .core.model_pack import MANIFEST_NAME, default_search_dirs

    for folder in default_search_dirs():
        pack = folder / "default"
        if (pack / MANIFEST_NAME).is_file():
            return pack
    return None


class _Progress:
    """Scoring progress on stderr: tqdm when installed, else one line rewritten with \\r."""

    def __init__(self, label: str):
        self.label, self._bar, self._width = label, None, 0

    def __call__(self, done: int, total: int, eta_s: float | None) -> None:
        eta = "--" if eta_s is None else _duration(eta_s)
        try:
            from tqdm import tqdm
        except ImportError:
            line = f"{self.label} {done}/{total} epochs, {eta} left"
            print("\r" + line.ljust(self._width), end="", file=sys.stderr, flush=True)
            self._width = len(line)
            return
        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.label, unit="epoch", file=sys.stderr,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                        "epochs [{elapsed}, {postfix}]")
        self._bar.set_postfix_str(f"{eta} left", refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._width:
            print(file=sys.stderr)


def _duration(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def cmd_score(args) -> int:
    from .core.model_pack import verify_pack
    from .core.remote import API_KEY_ENV
    from .core.recording import Recording
    from .core.runtime import LocalRuntime
    from .core.scoring_run import ScoringRun, study_montage
    from .core.study import default_study_path

    urls = None
    if args.server is not None:
        from .core.remote import parse_server_urls

        urls = parse_server_urls(args.server)
        if not urls:
            raise InputError(None, "--server needs the server's address, e.g. "
                                   "http://127.0.0.1:8080")
    else:
        for flag, given in (("--no-grammar", args.no_grammar), ("--parallel", args.parallel > 1),
                            ("--server-model", args.server_model is not None)):
            if given:
                raise InputError(None, f"{flag} is for --server: the embedded runtime answers "
                                       f"one request at a time, always under the grammar")
    rec = Recording.open(args.recording)
    try:
        pack = Path(args.model) if args.model else _default_pack()
        if pack is None:
            raise InputError(None, NO_DEFAULT_PACK)
        verify_pack(pack)  # a bad pack or a hash mismatch stops here, before any study is made
        study_path = Path(args.study) if args.study else default_study_path(rec.path)
        montage = study_montage(rec, study_path, args.scorer)
        if urls is not None:
            from .core.remote import RemotePool

            runtime = RemotePool.from_pack(urls, pack,
                                           model=args.server_model, grammar=not args.no_grammar,
                                           api_key=os.environ.get(API_KEY_ENV) or None)
        else:
            runtime = LocalRuntime(pack, n_threads=args.threads, n_gpu_layers=args.gpu_layers)
        run = ScoringRun(rec, montage, study_path, runtime, rationale=args.rationale,
                         actor=args.scorer, parallel=args.parallel)
        bar = _Progress("scoring")
        try:
            summary = run.run(progress=bar)
        finally:
            bar.close()
    finally:
        rec.close()
    per_epoch = summary.per_epoch_s()
    stored = sum(summary.stored.values())
    already = summary.already_stored.get("fast", 0)
    print(f"{study_path}: {stored} suggestion(s) stored, {already} epoch(s) already scored "
          f"by this model, {summary.skipped_no_signal} skipped (no signal)"
          + (f", {per_epoch:.2f} s per epoch" if per_epoch else ""))
    return EXIT_OK


def cmd_model_list(args) -> int:
    from .core.model_pack import default_search_dirs, list_packs

    dirs = [Path(d) for d in args.dir] if args.dir else default_search_dirs()
    problems: list = []
    packs = list_packs(dirs, problems=problems)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps([dict(m.to_dict(), pack_dir=str(m.pack_dir)) for m in packs],
                         indent=2, ensure_ascii=False))
        return EXIT_OK
    if not packs:
        print("no model packs found in: " + ", ".join(str(d) for d in dirs))
        return EXIT_OK
    for m in packs:
        size_mb = sum(f.bytes for f in m.files.values()) / 2**20
        print(f"{m.name}  {m.version}  {m.quantisation}  {size_mb:.0f} MiB  {m.pack_dir}")
    return EXIT_OK


def cmd_model_verify(args) -> int:
    from .core.model_pack import verify_pack

    m = verify_pack(args.pack, cache=not args.no_cache)
    print(f"{m.pack_dir}: model pack OK: {m.label}, {len(m.all_files())} files match the manifest")
    return EXIT_OK


def cmd_model_convert(args) -> int:
    from .core.convert import convert_checkpoint, pack_folder_name
    from .paths import user_data_dir

    out = Path(args.out) if args.out else user_data_dir() / "packs" / pack_folder_name(args.name)
    path = convert_checkpoint(args.hf_dir, out, name=args.name, quant=args.quant,
                              prompt_file=args.prompt, licence=args.licence, version=args.pack_version,
                              progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(path)
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------
def _gui_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--screenshot", help="save a PNG of the window once the study is on screen")
    s.add_argument("--exit-after", type=float, metavar="SECONDS",
                   help="close the window this long after the study is on screen (unattended runs)")
    s.add_argument("--model", metavar="PACK",
                   help="model pack folder to load for AI suggestions (verified first)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _positive_int_at_most(maximum: int):
    """An argparse type: a whole number from 1 to ``maximum``."""
    def parse(text: str) -> int:
        value = _positive_int(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"at most {maximum}, not {value}")
        return value
    return parse




def build_parser() -> argparse.ArgumentParser:
    # (core.remote imports scipy: main() has imported llama_cpp first where it matters)
    from .core.remote import API_KEY_ENV, MAX_PARALLEL

    p = argparse.ArgumentParser(prog="sleepvlm-ws", description="SleepVLM Workstation")
    p.add_argument("--version", action="version", version=f"sleepvlm-ws {__version__}")
    p.add_argument("--scorer", default=default_scorer(), help="scorer name written into decisions")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="open the workstation on the bundled demo study")
    s.add_argument("--prepare-only", action="store_true", help="only generate the demo recording; print its path")
    _gui_options(s)
    s.add_argument("--no-model", action="store_true",
                   help="do not load the default model pack (manual scoring only)")
    s.add_argument("--no-score", action="store_true",
                   help="load the model but do not start scoring the night")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("open", help="open the workstation (optionally on a recording)")
    s.add_argument("recording", nargs="?")
    s.add_argument("--study", help="study file (default: next to the recording)")
    _gui_options(s)
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
    s.add_argument("study")
    s.add_argument("--format", required=True, choices=["tsv", "csv", "edf", "xml", "json"])
    s.add_argument("--out", required=True)
    s.add_argument("--deidentify", action="store_true", help="leave out patient and recording identifiers")
    s.set_defaults(func=cmd_export)
    from .cli_report import add_report_command
    add_report_command(sub)
    from .cli_evaluate import add_evaluate_command
    add_evaluate_command(sub)
    from .cli_serve import add_serve_command
    add_serve_command(sub)

    s = sub.add_parser("audit", help="audit trail tools")
    asub = s.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="exit 0 if the audit chain is intact, 1 naming the first broken event")
    v.add_argument("study")
    v.set_defaults(func=cmd_audit_verify)

    s = sub.add_parser("score", help="AI scoring: store the model's suggestion for every epoch "
                                      "(resumes where a previous run stopped)")
    s.add_argument("recording")
    s.add_argument("--model", metavar="PACK", help="model pack folder (default: the default pack)")
    s.add_argument("--study", help="study file (default: next to the recording)")
    s.add_argument("--rationale", choices=["none", "all"], default="none",
                   help="'all': a second pass adds the written reasoning (slow)")
    s.add_argument("--threads", type=_positive_int, metavar="N", help="CPU threads for the model")
    s.add_argument("--gpu-layers", type=int, default=0, metavar="N",
                   help="model layers to put on the GPU (-1: all)")
    s.add_argument("--server", metavar="URL[,URL...]",
                   help="send the requests to an OpenAI-compatible server (sleepvlm-ws serve, "
                        "llama-server, vLLM) "
                        "instead of the embedded runtime, or to several serving the same model; "
                        f"the pack gives the prompt and rules; an API key is read from ${API_KEY_ENV}")
    s.add_argument("--server-model", metavar="NAME",
                   help="the served model's name (default: the first the server lists)")
    s.add_argument("--parallel", type=_positive_int_at_most(MAX_PARALLEL), default=1, metavar="N",
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


_MODEL_COMMANDS = {"demo", "open", "score", "evaluate", "serve"}


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if set(words) & _MODEL_COMMANDS:
        # before scipy (which the evaluate and report modules import with the parser): a CUDA
        # build of llama.cpp segfaults at model load otherwise (seen on the lent H100)
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            pass
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed a one-line usage error
        return EXIT_BAD_INPUT if e.code not in (0, None) else EXIT_OK
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"sleepvlm-ws: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("sleepvlm-ws: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a defect, not bad input: one line here, the traceback in the log
        from .paths import user_data_dir

        log_path = user_data_dir() / "error.log"
        import traceback

        with open(log_path, "a", encoding="utf-8") as fh:
            traceback.print_exc(file=fh)
        print(f"sleepvlm-ws: internal error: {type(e).__name__}: {e} (details in {log_path})",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
