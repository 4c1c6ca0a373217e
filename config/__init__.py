"""The default policy file, `omniroute.toml`, shipped as package data."""
