"""Training recipe for the workstation's default model pack (see models/training/README.md).

Import path: the recipe uses the workstation's own core (synthetic nights, renderer, evidence,
answer format, request layout), so ``app/`` must be on ``sys.path``; ``train_default.py`` puts it
there.
"""
