"""`python -m chaos`: run the fault scenarios and print each one's figures and promise.

    python -m chaos                      # every scenario, full size (about 5 minutes)
    python -m chaos --only kill,pause    # some of them
    python -m chaos --quick              # small sizes (what tests/test_failover.py runs)
    python -m chaos --json out.json

Everything runs on 127.0.0.1 with its own redis-server and nodes in a temporary directory,
bounded in time; a broken promise is reported as FAILED and makes the exit status 1. Do not
run it beside a benchmark: both measure time on the same cores.

The scenarios are listed in `chaos/promises.toml`, in the order they run: for each, what it
does, what it promises, the function that runs it, and its sizes full and with `--quick`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.scenarios import Figures

PROMISES = Path(__file__).with_name("promises.toml")


@dataclass(frozen=True)
class Scenario:
    """One table of `promises.toml`: what the scenario does, what it promises, and its run."""

    what: str
    promise: str
    run: Callable[..., Awaitable[Figures]]
    full: Mapping[str, Any]
    quick: Mapping[str, Any]

    def __call__(self, workdir: Path, quick: bool) -> Awaitable[Figures]:
        return self.run(workdir, **(self.quick if quick else self.full))


def load(path: Path = PROMISES) -> dict[str, Scenario]:
    """The scenarios of `path` in its order; every `run` is looked up here, so a name that
    does not exist fails at start rather than after the scenarios before it."""
    scenarios: dict[str, Scenario] = {}
    for name, row in tomllib.loads(path.read_text("utf-8")).items():
        module, _, function = row["run"].rpartition(".")
        run = getattr(importlib.import_module(f"chaos.{module}"), function)
        full = row.get("full", {})
        scenarios[name] = Scenario(row["what"], row["promise"], run, full, row.get("quick", full))
    return scenarios


SCENARIOS = load()


def options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; known: {', '.join(SCENARIOS)}")
    return args


async def run(names: Sequence[str], quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in names:
        scenario = SCENARIOS[name]
        print(f"- {name}: {scenario.what} …", file=sys.stderr, flush=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as tmp:
            try:
                figures: Any = await scenario(Path(tmp), quick)
                held = True
            except AssertionError as broken:
                figures, held = {"broken": str(broken)[:300]}, False
        took = round(time.monotonic() - started, 1)
        row = {"scenario": name, "what": scenario.what, "promise": scenario.promise, "held": held}
        rows.append({**row, "seconds": took, "figures": figures})
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| scenario | promise | held | figures |", "|---|---|---|---|"]
    for row in rows:
        figures = ", ".join(f"{k} {v}" for k, v in row["figures"].items())
        held = "yes" if row["held"] else "**FAILED**"
        lines.append(f"| {row['what']} | {row['promise']} | {held} | {figures} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = options(argv)
    rows = asyncio.run(run(args.names, args.quick))
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(row["held"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
