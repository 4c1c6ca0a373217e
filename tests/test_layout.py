"""The top-level packages are this repository's, not PyPI namesakes (Django Channels above all)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["channels", "router", "queues", "config", "agent_state"])
def test_package_comes_from_this_repository(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().is_relative_to(REPO), (
        f"{name} is imported from {module.__file__}, not from {REPO}: "
        f"another distribution installs a package called {name!r}"
    )


def test_the_default_config_ships_with_the_config_package() -> None:
    config = importlib.import_module("config")
    assert config.__file__ is not None
    assert (Path(config.__file__).parent / "omniroute.toml").is_file()
