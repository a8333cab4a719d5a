"""The command line, ``sleepvlm-ws``: one module per group of commands, the parser, and the entry
point. ``main`` imports llama_cpp before anything that imports scipy (a CUDA build of llama.cpp
segfaults at model load otherwise), so this package imports nothing else at the top.

May import: everything in ``sleepvlm_ws`` (``ui`` only for the window commands).
"""

from .main import main

__all__ = ["main"]
