"""The default policy file, `omniroute.toml`, shipped as package data.

Every setting with its default and one line of why; `router.settings` reads it with
`importlib.resources`, then the user's file, then `OMNIROUTE_*`. No code lives here, and it
imports nothing (tests/test_layout.py).
"""
