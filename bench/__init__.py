"""Benchmarks (scripts, not tests). Run from the repository root: `python -m bench` (end to end,
see bench/README.md) and `python3 -m bench.match_bench` (one routing decision).

`bench.__main__` runs `bench.runs` (our nodes, simulated desktops and an open-loop poster, at
one offered rate each), `bench.probes` and `bench.ceiling` beside them, and `bench.report`
writes the table; `bench.stats` is the one percentile every figure uses.

May import `queues`, `store`, `replay` and `chaos.processes` (a free port, a throw-away
redis-server); of `router`, only `router.guidance` (its rules timed in process) and
`router.limits` (the token bucket the desktops pace their frames by): the rest it drives as
`omniroute serve` processes over HTTP and WebSockets. Nothing in the product imports it
(tests/test_layout.py).
"""
