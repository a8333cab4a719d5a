"""Entry point of the frozen desktop bundle (PyInstaller): ``sleepvlm-ws`` as in a pip install.

A frozen application has no separate Python interpreter: ``sys.executable`` is this program.
The workstation starts a fresh interpreter in two places (the answer grammar is checked with
``sys.executable -c CODE`` so that a llama.cpp abort cannot take the application down, and
checkpoint conversion uses ``sys.executable -m MODULE``), so this launcher answers those two
forms itself, like ``python -c`` / ``python -m`` would, before handing every other command line
to the workstation's own ``main()``.
"""

from __future__ import annotations

import multiprocessing
import runpy
import sys


def _as_interpreter(argv: list[str]) -> int | None:
    """Run ``-c CODE [ARGS]`` or ``-m MODULE [ARGS]`` like the Python interpreter; None otherwise."""
    if len(argv) < 3 or argv[1] not in ("-c", "-m"):
        return None
    flag, target, rest = argv[1], argv[2], argv[3:]
    try:
        if flag == "-c":
            sys.argv = ["-c", *rest]
            exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
        else:
            sys.argv = [target, *rest]
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def main() -> int:
    multiprocessing.freeze_support()
    status = _as_interpreter(sys.argv)
    if status is not None:
        return status
    from sleepvlm_ws.cli import main as workstation_main

    return workstation_main()


if __name__ == "__main__":
    sys.exit(main())
