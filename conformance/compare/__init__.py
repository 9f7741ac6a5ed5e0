"""Numerical comparisons and their tolerances, numpy only: outputs, training steps, blocks."""
