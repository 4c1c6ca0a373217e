"""The layout: the top-level packages are this repository's, not PyPI namesakes (Django Channels
above all), and dependencies point one way — the engines and adapters never import `router`,
the product never imports `bench` or `chaos`, and only `router`'s edge speaks aiohttp. Each
package's `__init__` docstring states its arrows; `IMPORTS` below is the same list, checked."""

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
    queues_args = importlib.import_module("queues.args")
    assert channels_base.MAX_ID == queues_args.MAX_ID


# What each package may import of this repository (itself aside): docs/architecture.md draws it.
IMPORTS: dict[str, set[str]] = {
    "agent_state": set(),
    "config": set(),
    "channels": set(),
    "queues": {"agent_state"},
    "store": {"queues"},
    "replay": {"queues"},
    "router": {"agent_state", "channels", "config", "queues", "replay", "store"},
    "bench": {"chaos", "queues", "replay", "router", "store"},
    "chaos": {"bench", "channels", "queues", "router", "store"},
}
# Where a test tool leans on the other, the one module it may use.
THROUGH: dict[tuple[str, str], set[str]] = {
    ("bench", "chaos"): {"chaos.processes"},  # a free port, a throw-away redis-server
    ("chaos", "bench"): {"bench.runs"},  # the load generator and desktops, one way to measure
    # rules timed in process (the rest as a server); the token bucket its desktops pace by
    ("bench", "router"): {"router.guidance", "router.limits"},
}


def imported_names(path: Path) -> set[str]:
    """The dotted name of everything one module imports (`from a import b` is `a.b`), those
    inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, modules: set[str]) -> bool:
    return any(name == module or name.startswith(module + ".") for module in modules)


@pytest.mark.parametrize("name", sorted(IMPORTS))
def test_imports_point_one_way(name: str) -> None:
    offenders = []
    for path in sorted((REPO / name).rglob("*.py")):
        for imported in sorted(imported_names(path)):
            top = imported.split(".")[0]
            if top == name or top not in IMPORTS:
                continue
            if top not in IMPORTS[name] or not within(imported, THROUGH.get((name, top), {top})):
                offenders.append(f"{path.relative_to(REPO)} imports {imported}")
    assert not offenders, f"{name} may import only {sorted(IMPORTS[name])}: {offenders}"


# No socket below the edge: the engines and adapters are handed transports, never open them.
NO_AIOHTTP = ["agent_state", "channels", "config", "queues", "replay", "store"]
# router's core (events in, decisions, frames out) never sees a request or a socket.
ROUTER_CORE = [
    "admission",
    "attendance",
    "customers",
    "delivery",
    "frames",
    "inbound",
    "liveness",
    "node_loops",
    "replies",
    "service",
    "voice_tasks",
]


def test_only_the_edge_imports_aiohttp() -> None:
    paths = [p for name in NO_AIOHTTP for p in sorted((REPO / name).rglob("*.py"))]
    paths += [REPO / "router" / f"{name}.py" for name in ROUTER_CORE]
    offenders = [
        str(path.relative_to(REPO))
        for path in paths
        if path.exists() and "aiohttp" in imported_packages(path)
    ]
    assert not offenders, f"aiohttp belongs to router's edge: {offenders}"
