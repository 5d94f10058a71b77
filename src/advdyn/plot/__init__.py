"""Figures (matplotlib, without pyplot): risk curves, phase diagrams, eps* plots."""
