"""Benchmarks run by ``make bench`` (``python -m tests.bench``); see ``harness.py``."""
