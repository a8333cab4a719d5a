"""``sleepvlm-ws``: the entry point.

Exit codes: 0 success, 1 a check that ran and failed (``audit verify``), 2 bad input (one line
on stderr naming the file and the problem), 3 an internal error (one line; details in the log).
"""

from __future__ import annotations

import logging
import sys
import traceback

from ..errors import InputError
from ..paths import user_data_dir
from .exit_codes import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK

log = logging.getLogger("sleepvlm_ws")
_MODEL_COMMANDS = {"demo", "open", "score", "evaluate", "serve"}


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if set(words) & _MODEL_COMMANDS:
        # before scipy (which the evaluate and report modules import with the parser): a CUDA
        # build of llama.cpp segfaults at model load otherwise (seen on the lent H100)
        try:
            import llama_cpp  # noqa: F401  # late: first of all, when a command opens a model
        except ImportError:
            pass
    from .parser import build_parser  # late: after llama_cpp (above), before scipy

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
        log_path = user_data_dir() / "error.log"
        with open(log_path, "a", encoding="utf-8") as fh:
            traceback.print_exc(file=fh)
        print(f"sleepvlm-ws: internal error: {type(e).__name__}: {e} (details in {log_path})",
              file=sys.stderr)
        return EXIT_INTERNAL
