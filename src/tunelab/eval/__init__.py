"""Evaluation: graded probe sets and before/after comparisons."""
