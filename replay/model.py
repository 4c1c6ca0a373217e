"""A recording read as traffic and behaviour: what replay feeds the engine, and how agents act.

From each finished task's rows (`queues.trace`): its arrival (channel, client group, the
fields its priority rules read, the preferred last agent), reclassifications, whether and when
the customer abandoned, how long the first agent who accepted it took to accept, to handle it
(accept → complete) and to wrap up (complete → end); and every offer its agents rejected or let
time out, with how long they took. From the agent actions: logins, presence and logouts.

Work still open when the recording was taken is left out (`Scenario.open_tasks` counts it);
a task whose first arrival row was trimmed away cannot be one (the arrival row is always kept).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from queues.trace import Row
from replay.recording import Recording


@dataclass
class Conversation:
    """One recorded task: traffic (arrival, abandonment) and the behaviour it met."""

    id: str
    customer: str
    channel: str
    group: str
    attrs: dict[str, Any]
    arrive_ms: int
    last_agent: str = ""
    abandon_ms: int | None = None  # the customer left, unanswered, at this time
    accept_ms: int | None = None  # offer → accept of the offer that was accepted
    handle_ms: int | None = None  # accept → complete
    wrap_ms: int | None = None  # complete → end of wrap-up
    answered_by: str = ""
    recorded_wait_ms: int | None = None
    reclassified: list[tuple[int, str]] = field(default_factory=list)
    refusals: dict[str, tuple[str, int]] = field(default_factory=dict)  # agent → (how, after)


@dataclass
class Scenario:
    """Everything one replay needs, in time order."""

    conversations: list[Conversation]
    actions: list[Row]
    open_tasks: int = 0
    start_ms: int = 0
    end_ms: int = 0
    median_accept_ms: dict[str, int] = field(default_factory=dict)  # per agent
    median_handle_ms: dict[str, int] = field(default_factory=dict)  # per channel
    median_wrap_ms: dict[str, int] = field(default_factory=dict)  # per channel


def scenario(recording: Recording) -> Scenario:
    """Read `recording` (module docstring); deterministic: same recording, same scenario."""
    convs: list[Conversation] = []
    open_tasks = 0
    for name in sorted(recording.traces, key=lambda n: (_enq(n), n)):
        conv = _conversation(name, recording.traces[name])
        if conv is None:
            open_tasks += 1
        else:
            convs.append(conv)
    actions = [
        list(a) for a in recording.actions if a[1] in ("login", "presence", "logout", "expired")
    ]
    times = [c.arrive_ms for c in convs] + [int(a[0]) for a in actions]
    out = Scenario(convs, actions, open_tasks, min(times, default=0), max(times, default=0))
    accepts: dict[str, list[int]] = {}
    handles: dict[str, list[int]] = {}
    wraps: dict[str, list[int]] = {}
    for c in convs:
        if c.accept_ms is not None:
            accepts.setdefault(c.answered_by, []).append(c.accept_ms)
        if c.handle_ms is not None:
            handles.setdefault(c.channel, []).append(c.handle_ms)
        if c.wrap_ms is not None:
            wraps.setdefault(c.channel, []).append(c.wrap_ms)
    out.median_accept_ms = {k: int(statistics.median_low(v)) for k, v in accepts.items()}
    out.median_handle_ms = {k: int(statistics.median_low(v)) for k, v in handles.items()}
    out.median_wrap_ms = {k: int(statistics.median_low(v)) for k, v in wraps.items()}
    return out


def _enq(name: str) -> int:
    try:
        return int(name.rsplit("@", 1)[1])
    except (IndexError, ValueError):
        return 0


def _conversation(name: str, rows: list[Row]) -> Conversation | None:
    if not rows or rows[0][1] != "enqueued" or rows[-1][1] != "ended":
        return None
    arrive, _kind, last, info = rows[0]
    info = info if isinstance(info, dict) else {}
    task_id = name.rsplit("@", 1)[0]
    conv = Conversation(
        id=task_id,
        customer=task_id,  # one customer per task is enough to route it the same way
        channel=str(info.get("ch", "chat")),
        group=str(info.get("grp", "normal")),
        attrs=dict(info.get("attrs") or {}),
        arrive_ms=int(arrive),
        last_agent=str(last or ""),
    )
    offered: dict[str, int] = {}
    assigned_at: int | None = None
    completed_at: int | None = None
    for at, kind, agent, detail in rows[1:]:
        at = int(at)
        if kind == "offered":
            offered[agent] = at
        elif kind in ("rejected", "timed_out") and agent not in conv.refusals:
            conv.refusals[agent] = (kind, at - offered.get(agent, at))
        elif kind == "assigned" and assigned_at is None:
            assigned_at = at
            conv.answered_by = agent
            conv.accept_ms = at - offered.get(agent, at)
            conv.recorded_wait_ms = at - conv.arrive_ms
        elif kind == "completed" and completed_at is None and assigned_at is not None:
            completed_at = at
            conv.handle_ms = at - assigned_at
        elif kind == "reclassified":
            conv.reclassified.append((at, str(detail).split(">", 1)[1]))
        elif kind == "ended":
            if detail == "abandoned" and assigned_at is None:
                conv.abandon_ms = at
            elif completed_at is not None:
                conv.wrap_ms = at - completed_at
    return conv
