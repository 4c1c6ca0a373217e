"""Benchmarks (scripts, not tests). Run from the repository root: `python3 -m bench.match_bench`."""
