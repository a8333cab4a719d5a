"""Pipelines that join the domains: the scoring run (recording -> epoch window -> image ->
request -> answer -> suggestion in the study) and the evaluation of a pack against a reference.

May import: every core package. Nothing in core imports ``pipeline`` except the CLI and the UI.
"""
