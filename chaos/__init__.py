"""Fault scenarios with figures: `python -m chaos` (see `docs/reliability.md`).

`chaos.harness` starts real nodes and desktops; `chaos.scenarios` kills, pauses and overloads
them and measures; `chaos.__main__` runs them and prints a table. May import `router` and
`queues` (to read what they promise); nothing in the product imports this package.
"""
