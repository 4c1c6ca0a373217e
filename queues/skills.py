"""Skills: what work needs of an agent beyond its tier, and how long a wish holds.

Work may carry skills (`{"de": 1, "billing": 3}`: name → minimum proficiency 1-5); an agent
has skills (name → proficiency 1-5; a bare name is proficiency 1). The policy's
`skills_hard` names the skills that are requirements: only agents who have them at the
minimum ever get the work, at any waiting time. Every other skill is preferred: while the
work has waited less than `skills_widen_s` (per skill `skills_widen_by`) only agents who have
it get the work, and after that anyone the tier filter lets in. Skills never widen the tier
filter: an agent must pass `Policy.allowed` and its tier's level first, then the skills.

Both engines decide with the same rule (`docs/routing.md`, "Skills"): the work's skills are
one signature string, part of its partition, so an agent looking for work judges a whole
partition at once — `cutoff` says which arrivals in it the agent may take now. This module is
the Python half; `queues/lua/lib_rules.lua` mirrors `cutoff` and `hard_ok`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from queues.errors import Invalid

SKILL_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # no '|', ',' or '=': they delimit signatures
MAX_SKILLS = 50  # per agent and per piece of work
PROFICIENCY = range(1, 6)

Skills = dict[str, int]
Reqs = tuple[tuple[str, int], ...]  # a signature parsed: (name, minimum) pairs


def check_skills(value: Any, field: str = "skills") -> Skills:
    """A list of names (proficiency 1) or a map name → 1-5, as a map; `Invalid` otherwise."""
    if value is None:
        return {}
    if isinstance(value, list | tuple):
        pairs: Iterable[tuple[Any, Any]] = ((name, 1) for name in value)
    elif isinstance(value, Mapping):
        pairs = value.items()
    else:
        raise Invalid("skills must be a list of names or an object name → proficiency", field)
    out: Skills = {}
    for name, level in pairs:
        if not isinstance(name, str) or not SKILL_RE.fullmatch(name):
            raise Invalid("a skill name is 1-64 characters of letters, digits and _ . : -", field)
        if isinstance(level, bool) or not isinstance(level, int) or level not in PROFICIENCY:
            raise Invalid(f"the proficiency of skill {name} must be an integer 1-5", field)
        out[name] = level
    if len(out) > MAX_SKILLS:
        raise Invalid(f"at most {MAX_SKILLS} skills", field)
    return out


def signature(skills: Mapping[str, int]) -> str:
    """The canonical form of work's skills, `name=min` joined by commas in byte order of the
    names; empty for none. It is the fourth field of a partition key."""
    return ",".join(f"{name}={skills[name]}" for name in sorted(skills, key=str.encode))


@functools.lru_cache(maxsize=1024)
def parse(sig: str) -> Reqs:
    """The (name, minimum) pairs of a signature, parsed once while it is in use (a bounded
    cache, as lib.lua's reqs_of is)."""
    if not sig:
        return ()
    pairs = (item.partition("=") for item in sig.split(","))
    return tuple((name, int(level)) for name, _, level in pairs)


def widen_ms(wire: Mapping[str, Any], name: str) -> int:
    """How long after arrival a preferred skill stops being asked for."""
    return int(wire["sk_by"].get(name, wire["sk_ms"]))


def hard_ok(wire: Mapping[str, Any], have: Mapping[str, int], reqs: Reqs) -> bool:
    """Does an agent with skills `have` meet every hard requirement in `reqs`?"""
    hard = wire["sk_hard"]
    return all(have.get(name, 0) >= level for name, level in reqs if name in hard)


def lacking_wait(wire: Mapping[str, Any], have: Mapping[str, int], reqs: Reqs) -> int | None:
    """How long (ms) work needing `reqs` must have waited before an agent with skills `have`
    may take it: 0 when it meets them all, the longest widening of the preferred ones it
    lacks (or has below the minimum), None when it lacks a hard one."""
    wait = 0
    hard = wire["sk_hard"]
    for name, level in reqs:
        if have.get(name, 0) >= level:
            continue
        if name in hard:
            return None
        wait = max(wait, widen_ms(wire, name))
    return wait


def cutoff(wire: Mapping[str, Any], have: Mapping[str, int], reqs: Reqs, now: int) -> int | None:
    """The latest arrival (ms) of work needing `reqs` that an agent with skills `have` may take
    at `now`, as far as skills go; None when it lacks a hard one."""
    wait = lacking_wait(wire, have, reqs)
    return None if wait is None else now - wait


def fits_at(wire: Mapping[str, Any], have: Mapping[str, int], reqs: Reqs, enq: int) -> int | None:
    """From when (ms) an agent with skills `have` may take work that arrived at `enq`; None
    when it lacks a hard one (explain's `missing_skill` and `preferred_skill`)."""
    wait = lacking_wait(wire, have, reqs)
    return None if wait is None else enq + wait


def widen_moments(wire: Mapping[str, Any], reqs: Reqs, enq: int) -> list[int]:
    """When each preferred skill of work that arrived at `enq` stops being asked for."""
    hard = wire["sk_hard"]
    return [enq + widen_ms(wire, name) for name, _ in reqs if name not in hard]
