"""The model: packs (manifest, hashes, conversion to GGUF), the SleepVLM request and the tolerant
answer parser, the answer grammar, stage confidence from token probabilities, and the runtimes
that answer a request (in-process llama.cpp with its KV and libmtmd helpers, or a remote server).

May import: ``core.base`` and ``core.signals`` (a request carries rendered images). Never
``core.study``: the model answers requests and stores nothing.
"""
