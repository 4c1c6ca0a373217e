"""One replay: a scenario through the memory engine under one policy, in simulated time.

The engine takes time as an argument, so a day runs in seconds and runs the same every time.
Events are kept in one heap ordered by (time, sequence); between them the engine's own timers
(level openings, offer time-outs, wrap-up ends, preference ends) are ticked exactly when due.

How the recorded people act under the new policy:

* **Customers** arrive when they did. One who abandoned in the recording abandons at the same
  moment if still unanswered then; one who was answered waits as long as it takes (their
  patience is unknown beyond their recorded wait, so abandons can only fall, never rise: a
  policy that makes people wait longer than in the recording is judged optimistically).
* **Agents** log in, change presence and log out when they did (their presence never lapses:
  desktops are taken to heartbeat). Offered a task they rejected or let time out in the
  recording, they do that again, after the same delay. Any other offer they accept after the
  delay the recorded accept of that task took (else their median accept delay, else 0 ms).
* **Handle and wrap-up times belong to the conversation**: whoever takes it holds it for its
  recorded handle time and wraps up for its recorded wrap-up time (or until the policy's
  wrap-up ends, if sooner). A task never answered in the recording takes its channel's median.
* Transfers and releases are not replayed: a conversation stays with the agent who accepted it.
"""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass, field
from typing import Any

from queues import effects as fx
from queues.errors import RoutingError
from queues.memory import MemoryEngine
from queues.policy import CHANNELS, Policy
from replay.model import Conversation, Scenario

NEVER_LAPSES_S = 10.0 * 365 * 86_400
TICK_LIMIT = 100_000
KEYS = (*CHANNELS, "*")


@dataclass
class Outcome:
    """What became of each task and how busy each agent was (replay.report sums it up)."""

    waits: dict[str, tuple[str, int | None, int | None, str]] = field(default_factory=dict)
    # task → (channel, answered after ms or None, abandoned after ms or None, tier answering)
    logged_in_ms: dict[str, int] = field(default_factory=dict)  # agent → logged-in time
    busy_ms: dict[str, dict[str, int]] = field(default_factory=dict)  # agent → channel|* → ms
    tier: dict[str, str] = field(default_factory=dict)
    cap: dict[str, dict[str, int]] = field(default_factory=dict)
    end_ms: int = 0


class Replay:
    """Run `scenario` under `policy` once: `await Replay(policy, scenario).run()`."""

    def __init__(self, policy: Policy, scenario: Scenario) -> None:
        self.policy = dataclasses.replace(policy, presence_ttl_s=NEVER_LAPSES_S)
        self.scenario = scenario
        self.now = scenario.start_ms
        self.engine = MemoryEngine(self.policy, clock=lambda: self.now / 1000, domain="replay")
        self.heap: list[tuple[int, int, str, Any]] = []
        self.seq = 0
        self.convs: dict[str, Conversation] = {c.id: c for c in scenario.conversations}
        self.out = Outcome()
        self._since: dict[str, int] = {}  # agent → logged in since
        self._held: dict[str, dict[str, int]] = {}  # agent → channel → tasks held
        self._held_since: dict[tuple[str, str], int] = {}
        self._channel: dict[str, str] = {}  # task → channel, for its holder's busy time
        self._offers: dict[str, str] = {}  # live reservation → task
        self._reserved: dict[str, str] = {}  # task → its live reservation

    def push(self, at: int, kind: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, payload))

    async def run(self) -> Outcome:
        for row in self.scenario.actions:
            self.push(int(row[0]), "action", row)
        for c in self.scenario.conversations:
            self.push(c.arrive_ms, "arrive", c)
            if c.abandon_ms is not None:
                self.push(c.abandon_ms, "abandon", c.id)
            for at, group in c.reclassified:
                self.push(at, "reclassify", (c.customer, group))
        engine = self.engine
        stuck = 0
        while True:
            due = engine.next_due_ms(skip=("alive",))
            head = self.heap[0][0] if self.heap else None
            if due is not None and (head is None or due <= head):
                self.now = max(self.now, due)
                self.apply(await engine.tick(limit=TICK_LIMIT))
                stuck = stuck + 1 if engine.next_due_ms(skip=("alive",)) == due else 0
                if stuck > 2:  # a timer that never fires would spin here for ever
                    raise RuntimeError(f"the engine's timer due at {due} ms did not fire")
                continue
            if head is None:
                break
            at, _seq, kind, payload = heapq.heappop(self.heap)
            self.now = max(self.now, at)
            await self.step(kind, payload)
        self.finish()
        return self.out

    async def step(self, kind: str, payload: Any) -> None:
        engine = self.engine
        try:
            if kind == "arrive":
                c: Conversation = payload
                self.out.waits[c.id] = (c.channel, None, None, "")
                self._channel[c.id] = c.channel
                self.apply(
                    await engine.enqueue(
                        c.id, c.customer, c.channel, c.group, c.attrs, c.last_agent or None
                    )
                )
            elif kind == "accept" or kind == "reject":
                res, agent = payload
                if res in self._offers:  # not revoked meanwhile (the customer left, …)
                    if kind == "reject":
                        self._reserved.pop(self._offers.pop(res), None)
                    call = engine.accept if kind == "accept" else engine.reject
                    self.apply(await call(res, agent))
            elif kind == "complete":
                task, agent = payload
                self.apply(await engine.complete(task, agent))
                wrap = self.convs[task].wrap_ms
                if wrap is None:
                    wrap = self.scenario.median_wrap_ms.get(self._channel[task], 0)
                if wrap < self.policy.wrapup_s.get(self._channel[task], 0) * 1000:
                    self.push(self.now + wrap, "wrapup_done", (task, agent))
            elif kind == "wrapup_done":
                self.apply(await engine.wrapup_done(*payload))
            elif kind == "abandon":
                if self.out.waits[payload][1] is None:
                    self.apply(await engine.withdraw(payload))
            elif kind == "reclassify":
                self.apply(await engine.reclassify(*payload))
            elif kind == "action":
                await self.act(payload)
        except RoutingError:
            pass  # e.g. an accept after the task left, a presence of an agent not logged in

    async def act(self, row: list[Any]) -> None:
        _at, kind, agent, detail = row
        engine = self.engine
        if kind == "login":
            tier, _, caps = str(detail).partition("|")
            cap = {c: int(n) for c, _, n in (p.partition("=") for p in caps.split(",") if p)}
            self.out.tier[agent], self.out.cap[agent] = tier, cap
            self.apply(await engine.login(agent, tier, cap))
            self._since.setdefault(agent, self.now)
        elif kind == "presence":
            self.apply(await engine.set_presence(agent, str(detail)))
        else:  # logout, expired
            self.apply(await engine.logout(agent))
            self._logged_out(agent)

    def apply(self, effects: list[fx.Effect]) -> None:
        for e in effects:
            if isinstance(e, fx.Offer):
                self._hold(e.agent, e.task, +1)
                self._offers[e.reservation] = e.task
                self._reserved[e.task] = e.reservation
                self.respond(e)
            elif isinstance(e, fx.Assigned):
                self._offers.pop(self._reserved.pop(e.task, ""), None)
                channel, _, _, _ = self.out.waits[e.task]
                wait = self.now - self.convs[e.task].arrive_ms
                self.out.waits[e.task] = (channel, wait, None, self.out.tier.get(e.agent, ""))
                handle = self.convs[e.task].handle_ms
                if handle is None:
                    handle = self.scenario.median_handle_ms.get(channel, 0)
                self.push(self.now + handle, "complete", (e.task, e.agent))
            elif isinstance(e, fx.OfferRevoked | fx.AssignmentRevoked):
                self._hold(e.agent, e.task, -1)
                if isinstance(e, fx.OfferRevoked):
                    self._offers.pop(e.reservation, None)
                    self._reserved.pop(e.task, None)
            elif isinstance(e, fx.TaskEnded):
                if e.agent:
                    self._hold(e.agent, e.task, -1)
                if e.reason == "abandoned":
                    channel, answered, _, tier = self.out.waits[e.task]
                    abandoned = self.now - self.convs[e.task].arrive_ms
                    self.out.waits[e.task] = (channel, answered, abandoned, tier)
            elif isinstance(e, fx.PresenceChanged) and e.state == "offline":
                self._logged_out(e.agent)

    def respond(self, offer: fx.Offer) -> None:
        """The agent answers as it did in the recording (module docstring)."""
        conv = self.convs[offer.task]
        limit = self.policy.reservation_timeout_s * 1000 - 1
        how = conv.refusals.get(offer.agent)
        if how is not None:
            if how[0] == "rejected":
                self.push(
                    self.now + min(how[1], int(limit)), "reject", (offer.reservation, offer.agent)
                )
            return  # timed out: the engine's timer does it
        delay = conv.accept_ms
        if delay is None:
            delay = self.scenario.median_accept_ms.get(offer.agent, 0)
        self.push(self.now + min(delay, int(limit)), "accept", (offer.reservation, offer.agent))

    def _hold(self, agent: str, task: str, by: int) -> None:
        """Count the tasks an agent holds per channel and in all (`*`); time with at least
        one is busy time."""
        held = self._held.setdefault(agent, dict.fromkeys(KEYS, 0))
        busy = self.out.busy_ms.setdefault(agent, dict.fromkeys(KEYS, 0))
        for key in (self._channel.get(task, "chat"), "*"):
            if by > 0 and held[key] == 0:
                self._held_since[(agent, key)] = self.now
            held[key] += by
            if by < 0 and held[key] == 0:
                busy[key] += self.now - self._held_since.pop((agent, key), self.now)

    def _logged_out(self, agent: str) -> None:
        since = self._since.pop(agent, None)
        if since is not None:
            self.out.logged_in_ms[agent] = self.out.logged_in_ms.get(agent, 0) + self.now - since

    def finish(self) -> None:
        """Close the open intervals at the end of the replay."""
        self.out.end_ms = self.now
        for agent in list(self._since):
            self._logged_out(agent)
        for (agent, key), since in list(self._held_since.items()):
            self.out.busy_ms[agent][key] += self.now - since
