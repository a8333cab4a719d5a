"""Shared pytest setup. Keep small: fixtures for one area belong in that area's test files."""

import os

# Real Qt widgets without a display (pytest-qt); must be set before Qt is imported.
os.environ["QT_QPA_PLATFORM"] = "offscreen"
