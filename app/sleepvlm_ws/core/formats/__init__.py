"""Hypnogram import and export in the formats sleep labs use."""
