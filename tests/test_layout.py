"""The layout: the top-level packages are this repository's, not PyPI namesakes (Django Channels
above all), and dependencies point one way — the engines and adapters never import `router`."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["channels", "router", "queues", "store", "config", "agent_state"])
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


LOWER = ["store", "queues", "agent_state", "channels"]


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every import in one module, those inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", LOWER)
def test_a_lower_package_never_imports_router(name: str) -> None:
    """Data flows one way (adapters → ingest → engine → queues/store → outbox → socket): the
    engines and the adapters know nothing of the server that runs them."""
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / name).rglob("*.py"))
        if "router" in imported_packages(path)
    ]
    assert not offenders, f"{name} must not import router: {offenders}"


def test_no_store_backend_imports_the_other() -> None:
    """What both backends share is in store.common; a backend importing the other would tie
    the Redis store to the memory store's internals."""
    for path in sorted((REPO / "store").glob("*.py")):
        text = path.read_text("utf-8")
        modules = {
            node.module
            for node in ast.walk(ast.parse(text, str(path)))
            if isinstance(node, ast.ImportFrom) and node.module
        }
        if path.stem.startswith("memory"):
            assert not any(m.startswith("store.redis") for m in modules), path.name
        if path.stem.startswith("redis"):
            assert not any(m.startswith("store.memory") for m in modules), path.name


def test_the_adapters_bound_on_ids_is_the_engines() -> None:
    """`channels` imports nothing of this repository, so it keeps its own copy of the one
    number it shares with the engine: the contract's bound on ids. The two must not differ."""
    channels_base = importlib.import_module("channels.base")
    queues_base = importlib.import_module("queues.base")
    assert channels_base.MAX_ID == queues_base.MAX_ID
