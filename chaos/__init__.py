"""Fault scenarios with figures: `python -m chaos` (see `docs/reliability.md`).

`chaos.harness` starts real nodes and desktops; `chaos.scenarios` kills, pauses and overloads
them and measures (with `cluster`, `sentinel`, `slow`, `edges`, `hostile`, `exposure`,
`provider`, `signed` for the faults of their own); `chaos.processes` owns throw-away
redis-servers and free ports; `chaos.__main__` runs the scenarios `promises.toml` lists
(each with its promise and sizes) and prints a table.

May import `router`, `channels`, `queues`, `store` (to read what they promise) and `bench`
(its load generator); nothing in the product imports this package (tests/test_layout.py).
"""
