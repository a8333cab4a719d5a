"""The lab server: the batch engine that decodes many requests on one llama.cpp context, and the
HTTP server that puts it on the network.

May import: ``core.base`` and ``core.model``.
"""
