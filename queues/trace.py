"""Routing decisions as both engines record them, and the memory engine's retention of them.

Every engine keeps, per task, the decisions that moved it — one row each, written inside the
operation that made the decision (on Redis inside the same function call, into the task record
it rewrites anyway: explain costs no round trip). A row is `[at_ms, kind, agent, detail]`:

* `enqueued` — agent: the preferred last agent or ""; detail `{ch, grp, prio, rules, attrs}`:
  the rules that set the priority and the values of the fields the rules read
* `offered` — `"<why>|<tier>"`, why: `longest_idle`, `last_agent`, `next_in_line`, `transfer`,
  `outbound` (a campaign contact to an agent with no work and no inbound work for it)
* `held` — the last agent; `"busy|<until_ms>"` or `"away|<until_ms>"`: waiting for it
* `rejected`, `timed_out` — the agent, now excluded from the task (a timed-out one is set away);
  the task is back in line
* `requeued` — the former holder or ""; detail `withdrawn` (logged out), `released`,
  `reclassified`, `preference_ended`, `last_agent_left`
* `assigned`, `completed` (wrap-up starts) — the agent
* `transferred` — the agent it left; `"agent:<id>"` or `"tier:<tier>"`
* `reclassified` — `"<old>><new>"`
* `ended` — the holder or ""; `completed` or `abandoned`

Level openings are not rows: they follow exactly from the policy and `enq` (`queues.explain`).
A task keeps its first row and the latest `explain_decisions - 1`. When the task ends its rows
are kept `explain_retention_s` more under its conversation (the part of the task id before
`~`), one entry per task and arrival (`<task>@<enq_ms>`).

Agent actions (for `omniroute replay`) are rows `[at_ms, kind, agent, detail]` with kind
`login` (detail `"<tier>|<cap per channel, comma-separated>"`), `presence` (`available` or
`away`), `logout`, `expired` (presence ran out): ids and times only, kept
`recording_retention_s`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

Row = list[Any]

KINDS = (
    "enqueued",
    "level_opened",
    "offered",
    "held",
    "rejected",
    "timed_out",
    "requeued",
    "assigned",
    "completed",
    "transferred",
    "reclassified",
    "ended",
)


def conversation_of(task_id: str) -> str:
    """The conversation a task belongs to: a second call's task is `<conversation>~<call>`."""
    return task_id.split("~", 1)[0]


def add_row(trace: list[Row], row: Row, limit: int) -> None:
    """Append, keeping the first row (the arrival) and the latest `limit - 1`."""
    trace.append(row)
    if len(trace) > max(2, limit):
        del trace[1]


def normalised(rows: list[Row]) -> list[Row]:
    """Rows as the memory engine holds them: Lua's cmsgpack gives an empty map as a list."""
    out: list[Row] = []
    for at, kind, agent, detail in rows:
        if kind == "enqueued" and isinstance(detail, dict):
            detail = dict(detail)
            detail["attrs"] = dict(detail.get("attrs") or {})
            detail["rules"] = list(detail.get("rules") or [])
        out.append([int(at), str(kind), str(agent), detail])
    return out


class Retained:
    """The memory engine's finished traces and agent actions, dropped after their retention.

    Times come from the engine's calls, so they are (nearly) increasing: both stores are
    queues in arrival order, trimmed from the front.
    """

    def __init__(self) -> None:
        self.traces: dict[str, dict[str, list[Row]]] = {}
        self._expiry: deque[tuple[int, str]] = deque()
        self._until: dict[str, int] = {}
        self.actions: deque[Row] = deque()

    def keep(self, task_id: str, enq: int, trace: list[Row], now: int, keep_ms: int) -> None:
        conv = conversation_of(task_id)
        self.traces.setdefault(conv, {})[f"{task_id}@{enq}"] = trace
        self._expiry.append((now + keep_ms, conv))
        self._until[conv] = now + keep_ms
        while self._expiry and self._expiry[0][0] <= now:
            _, old = self._expiry.popleft()
            # a conversation written again later has a later expiry further back: keep it
            if self._until.get(old, 0) <= now:
                self.traces.pop(old, None)
                self._until.pop(old, None)

    def act(self, row: Row, keep_ms: int) -> None:
        self.actions.append(row)
        cutoff = row[0] - keep_ms
        while self.actions and self.actions[0][0] < cutoff:
            self.actions.popleft()

    def of(self, conv: str) -> dict[str, list[Row]]:
        return dict(self.traces.get(conv, {}))
