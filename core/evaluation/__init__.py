"""Scoring the shipped models: the scoring library, the evaluate CLI, artifacts, comparisons, benchmarks."""
