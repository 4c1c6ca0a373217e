"""A tiny reference model of the routing engine, driven by the calls made and the effects seen.

It does not decide anything (the engines do); it *follows* them and refuses, with a
`Violation`, every step that breaks a guarantee of `queues.base` / `docs/routing.md`:

* a task is held (reserved, assigned, wrap-up) by at most one agent at a time;
* an offer goes only to a routable agent with a free slot on the channel (capacity minus load,
  none on a `voice_blocks` channel while a voice call is held) and never breaks the hard
  filter for the task's client group *at that moment* (`Assigned` is checked the same way);
* nothing is lost: a task leaves only with a `TaskEnded`;
* presence effects agree with the chosen state and the load (`agent_state.shown_state`).

`check_dump` compares an engine's `dump()` with the model: the same tasks, holders,
reservations and groups; loads and wrap-up counts equal to the held tasks per agent/channel.
Both the property test (one call at a time) and the race test (calls from several processes,
replayed in their global order) use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_state.base import shown_state
from queues.effects import (
    Assigned,
    AssignmentRevoked,
    Effect,
    Offer,
    OfferRevoked,
    PresenceChanged,
    TaskEnded,
)
from queues.policy import CHANNELS, Policy
from queues.skills import check_skills

HELD = ("reserved", "assigned", "wrapup")


class Violation(AssertionError):
    """An engine broke a guarantee (the message says which, and where)."""


@dataclass
class MAgent:
    id: str
    tier: str
    cap: dict[str, int]
    chosen: str = "offline"
    shown: str = "offline"
    exp: int = 0
    over_cap_ok: bool = False  # its capacity was lowered by a re-login while it held work
    skills: dict[str, int] = field(default_factory=dict)


@dataclass
class MTask:
    id: str
    customer: str
    channel: str
    group: str
    state: str = "queued"
    agent: str = ""
    res: str = ""
    skills: dict[str, int] = field(default_factory=dict)  # name → minimum


@dataclass
class MRes:
    id: str
    task: str
    agent: str
    deadline: int


class Model:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        wire = policy.to_wire()
        self.res_ms = int(wire["res_ms"])
        self.ttl_ms = int(wire["ttl_ms"])
        self.wrap_ms = {c: int(wire["wrap_ms"].get(c, 0)) for c in CHANNELS}
        self.agents: dict[str, MAgent] = {}
        self.tasks: dict[str, MTask] = {}
        self.res: dict[str, MRes] = {}
        self.spent_res: set[str] = set()  # reservations that ended (accepted, revoked...)
        self.enqueued: set[str] = set()
        self.ended: dict[str, str] = {}  # task -> reason
        self._ended_channel: dict[str, str] = {}
        self.offers = 0
        self.assignments = 0
        self.where = ""
        self.finishing = ""  # the task whose finish() is under way (see `apply`)

    # -- derived -------------------------------------------------------------------------------

    def load(self, agent: str) -> dict[str, int]:
        load = dict.fromkeys(CHANNELS, 0)
        for t in self.tasks.values():
            if t.agent == agent and t.state in HELD and t.id != self.finishing:
                load[t.channel] += 1
        return load

    def wrapups(self, agent: str) -> int:
        return sum(
            1
            for t in self.tasks.values()
            if t.agent == agent and t.state == "wrapup" and t.id != self.finishing
        )

    def free(self, agent: str, channel: str) -> int:
        a = self.agents[agent]
        load = self.load(agent)
        if channel != "voice" and channel in self.policy.voice_blocks and load["voice"] > 0:
            return 0
        return a.cap.get(channel, 0) - load[channel]

    def fail(self, message: str) -> None:
        raise Violation(f"{self.where}: {message}")

    # -- refusals: which error the spec gives for a call in the model's state ----------------

    def expected_refusal(self, op: str, args: Mapping[str, Any], now: int) -> str:
        """The error code docs/routing.md prescribes for this call now, or "" for success."""
        if op in ("accept", "reject"):
            res = self.res.get(args["reservation"])
            if res is None:
                return "not_found"
            if res.agent != args["agent"]:
                return "forbidden"
            return "expired" if now >= res.deadline else ""
        if op in ("complete", "wrapup_done", "release", "transfer"):
            t = self.tasks.get(args["task"])
            if t is None:
                return "not_found"
            if t.agent != args["agent"]:
                return "forbidden"
            if t.state != ("wrapup" if op == "wrapup_done" else "assigned"):
                return "conflict"
            if op == "transfer":
                return self._transfer_refusal(t, args, now)
            return ""
        if op == "withdraw":
            t = self.tasks.get(args["task"])
            if t is None:
                return "not_found"
            return "conflict" if t.state in ("assigned", "wrapup") else ""
        if op == "login":
            a = self.agents.get(args["agent"])
            live = any(
                t.agent == args["agent"] and t.state in ("reserved", "assigned")
                for t in self.tasks.values()
            )
            return "conflict" if a is not None and a.tier != args["tier"] and live else ""
        if op in ("set_presence", "heartbeat", "logout"):
            a = self.agents.get(args["agent"])
            if a is None:
                return "not_found"
            return "conflict" if a.chosen == "offline" and op != "logout" else ""
        if op == "enqueue":
            return "conflict" if args["task"] in self.tasks else ""
        return ""

    def _transfer_refusal(self, t: MTask, args: Mapping[str, Any], now: int) -> str:
        if args.get("to_agent"):
            x = self.agents.get(args["to_agent"])
            if x is None:
                return "not_found"
            if x.id == t.agent:
                return "conflict"
            if not self.policy.allowed(t.group, x.tier) or not self.has_hard_skills(x, t):
                return "forbidden"
            routable = x.chosen == "available" and x.exp > now
            return "" if routable and self.free(x.id, t.channel) > 0 else "conflict"
        return "" if self.policy.allowed(t.group, args["to_tier"]) else "forbidden"

    def refused(self, op: str, args: Mapping[str, Any], code: str, now: int) -> None:
        """A call was refused with `code`: the spec must say so (else an operation was lost)."""
        self.where = f"{op}({dict(args)}) at {now} refused with {code}"
        want = self.expected_refusal(op, args, now)
        if code != want:
            self.fail(f"the spec says {want or 'success'} in this state")

    # -- one call --------------------------------------------------------------------------------

    def apply(
        self, op: str, args: Mapping[str, Any], effects: Sequence[Effect], now_ms: int
    ) -> None:
        """A call `op(**args)` at `now_ms` succeeded with `effects`: follow it, or fail."""
        self.where = f"{op}({dict(args)}) at {now_ms} -> {list(effects)}"
        if self.expected_refusal(op, args, now_ms):
            self.fail(f"succeeded, but the spec says {self.expected_refusal(op, args, now_ms)}")
        self._before(op, args, now_ms)
        revoked_holder: dict[str, str] = {}
        for i, fx in enumerate(effects):
            # finish(t) frees the holder (touch: presence) *before* it emits `ended`
            after = effects[i + 1] if i + 1 < len(effects) else None
            self.finishing = (
                after.task
                if isinstance(fx, PresenceChanged)
                and isinstance(after, TaskEnded)
                and after.reason == "completed"
                and after.agent == fx.agent
                else ""
            )
            self._effect(op, args, fx, now_ms, revoked_holder)
        self.finishing = ""
        self._after(op, args, effects)

    def _before(self, op: str, args: Mapping[str, Any], now: int) -> None:
        """What the call itself changes before its first effect (docs/routing.md, Operations)."""
        if op == "login":
            agent, tier = args["agent"], args["tier"]
            cap = self.policy.capacity_for(args.get("capacity"))
            a = self.agents.get(agent)
            if a is None:
                a = self.agents[agent] = MAgent(agent, tier, cap)
            held = [t for t in self.tasks.values() if t.agent == agent and t.state in HELD]
            if a.tier != tier and any(t.state in ("reserved", "assigned") for t in held):
                self.fail("a tier change was accepted while the agent holds live work")
            a.tier, a.cap, a.skills = tier, cap, check_skills(args.get("skills"))
            load = self.load(agent)
            a.over_cap_ok = any(load[c] > cap.get(c, 0) for c in CHANNELS)
            if a.chosen == "offline":
                a.chosen = "away"
            a.exp = now + self.ttl_ms
        elif op == "set_presence":
            a = self.agents[args["agent"]]
            a.chosen = args["state"]
            a.exp = now + self.ttl_ms
        elif op == "heartbeat":
            self.agents[args["agent"]].exp = now + self.ttl_ms
        elif op == "enqueue":
            task = args["task"]
            if task in self.tasks:
                self.fail(f"a second task {task} was accepted while the first is alive")
            self.tasks[task] = MTask(
                task,
                args["customer"],
                args["channel"],
                args["group"],
                skills=check_skills(args.get("skills")),
            )
            self.enqueued.add(task)
            self.ended.pop(task, None)
        elif op == "reject":
            res = self._live_res(args["reservation"], args["agent"])
            t = self.tasks[res.task]
            t.state, t.agent, t.res = "queued", "", ""
            self._spend(res.id)
        elif op == "complete":
            t = self._held(args["task"], args["agent"], "assigned")
            if self.wrap_ms[t.channel] > 0:
                t.state = "wrapup"
        elif op in ("wrapup_done",):
            self._held(args["task"], args["agent"], "wrapup")
        elif op in ("transfer", "release"):
            self._held(args["task"], args["agent"], "assigned")
        elif op == "reclassify":
            for t in self.tasks.values():
                if t.customer == args["customer"]:
                    t.group = args["group"]

    def _after(self, op: str, args: Mapping[str, Any], effects: Sequence[Effect]) -> None:
        kinds = [type(fx).__name__ for fx in effects]
        if op == "accept" and kinds.count("Assigned") != 1:
            self.fail("a successful accept must emit exactly one Assigned")
        if op == "withdraw" and args["task"] not in self.ended:
            self.fail("a successful withdraw must end the task")
        if op == "wrapup_done" and self.ended.get(args["task"]) != "completed":
            self.fail("a successful wrapup_done must complete the task")
        instant = op == "complete" and self.wrap_ms[self._channel_of(args["task"])] == 0
        if instant and self.ended.get(args["task"]) != "completed":
            self.fail("complete without wrap-up must end the task")
        if op == "reclassify":
            for t in self.tasks.values():
                tier = self.agents[t.agent].tier if t.agent in self.agents else ""
                if t.state in HELD and not self.policy.allowed(t.group, tier):
                    self.fail(f"{t.id} is still {t.state} by {t.agent}, not allowed for {t.group}")
        if op == "release" and kinds[:1] != ["AssignmentRevoked"]:
            self.fail("a successful release must first revoke the assignment")
        if op == "transfer":
            t = self.tasks[args["task"]]
            if t.agent == args["agent"]:
                self.fail("the transferred task is still held by its former holder")
            if args.get("to_agent") and (t.agent != args["to_agent"] or t.state != "reserved"):
                self.fail("a transfer to an agent must offer the task to that agent")
        handed = any(k in ("Offer", "Assigned") for k in kinds)
        if op == "set_presence" and args["state"] == "away" and handed:
            self.fail("an agent going away was handed work")

    def _channel_of(self, task: str) -> str:
        if task in self.tasks:
            return self.tasks[task].channel
        return self._ended_channel[task]

    # -- effects ---------------------------------------------------------------------------------

    def _effect(
        self,
        op: str,
        args: Mapping[str, Any],
        fx: Effect,
        now: int,
        revoked_holder: dict[str, str],
    ) -> None:
        if isinstance(fx, Offer):
            self._offer(fx, now)
        elif isinstance(fx, OfferRevoked):
            reasons = {
                "logout": ("withdrawn",),
                "tick": ("timeout", "withdrawn"),
                "withdraw": ("withdrawn",),
                "reclassify": ("reclassified",),
            }.get(op, ())
            if fx.reason not in reasons:
                self.fail(f"{fx} is not a possible effect of {op}")
            res = self._live_res(fx.reservation, fx.agent)
            if res.task != fx.task:
                self.fail(f"{fx} names the wrong task (reservation is for {res.task})")
            if fx.reason == "timeout" and now < res.deadline:
                self.fail(f"{fx} before its deadline {res.deadline}")
            t = self.tasks[fx.task]
            t.state, t.agent, t.res = "queued", "", ""
            self._spend(res.id)
            revoked_holder[fx.task] = fx.agent
            if fx.reason == "timeout":
                self.agents[fx.agent].chosen = "away"
            if fx.reason == "reclassified" and self.policy.allowed(
                t.group, self.agents[fx.agent].tier
            ):
                self.fail(f"{fx}: the holder's tier is still allowed for {t.group}")
        elif isinstance(fx, Assigned):
            if op != "accept":
                self.fail(f"{fx} from {op}")
            res = self._live_res(args["reservation"], args["agent"])
            t = self.tasks.get(fx.task)
            if res.task != fx.task or fx.agent != res.agent or t is None:
                self.fail(f"{fx} does not match reservation {res}")
                return
            if fx.channel != t.channel:
                self.fail(f"{fx} on the wrong channel ({t.channel})")
            if now >= res.deadline:
                self.fail(f"{fx} at or after the deadline {res.deadline}")
            self._hard_filter(t, fx.agent, fx)
            t.state, t.res = "assigned", ""
            self._spend(res.id)
            self.assignments += 1
        elif isinstance(fx, AssignmentRevoked):
            if (op, fx.reason) not in (
                ("transfer", "transferred"),
                ("reclassify", "reclassified"),
                ("release", "released"),
            ):
                self.fail(f"{fx} is not a possible effect of {op}")
            t = self.tasks.get(fx.task)
            held = ("assigned", "wrapup") if fx.reason == "reclassified" else ("assigned",)
            if t is None or t.state not in held or t.agent != fx.agent:
                self.fail(f"{fx}: the task is not assigned to that agent ({t})")
                return
            if fx.reason == "reclassified" and self.policy.allowed(
                t.group, self.agents[fx.agent].tier
            ):
                self.fail(f"{fx}: the holder's tier is still allowed for {t.group}")
            if t.state == "wrapup":  # answered: it ends in this step (`ended`, completed)
                revoked_holder[fx.task] = fx.agent
                return
            t.state, t.agent = "queued", ""
        elif isinstance(fx, PresenceChanged):
            self._presence(op, fx, now)
        elif isinstance(fx, TaskEnded):
            self._ended(op, fx, revoked_holder)
        else:  # pragma: no cover - decode_effect knows no other kind
            self.fail(f"unknown effect {fx!r}")

    def _offer(self, fx: Offer, now: int) -> None:
        t = self.tasks.get(fx.task)
        if t is None:
            self.fail(f"{fx}: offer of a task that does not exist")
            return
        if t.state != "queued" or t.agent:
            self.fail(f"{fx}: DOUBLE HOLD - the task is {t.state} by {t.agent or '-'}")
        if fx.reservation in self.res:
            self.fail(f"{fx}: reservation id reused")
        if fx.channel != t.channel:
            self.fail(f"{fx}: wrong channel ({t.channel})")
        a = self.agents.get(fx.agent)
        if a is None:
            self.fail(f"{fx}: offer to an unknown agent")
            return
        if a.chosen != "available" or a.exp <= now:
            self.fail(f"{fx}: agent not routable (chosen {a.chosen}, exp {a.exp}, now {now})")
        free = self.free(fx.agent, t.channel)
        if free <= 0:
            self.fail(
                f"{fx}: CAPACITY - agent load {self.load(fx.agent)} cap {a.cap}"
                f" (voice blocks {self.policy.voice_blocks})"
            )
        self._hard_filter(t, fx.agent, fx)
        if not self.has_hard_skills(a, t):
            self.fail(f"{fx}: HARD SKILL - {t.skills} offered to an agent with {a.skills}")
        deadline = round(fx.expires_at * 1000)
        if deadline != now + self.res_ms:
            self.fail(f"{fx}: deadline {deadline} is not now + {self.res_ms}")
        t.state, t.agent, t.res = "reserved", fx.agent, fx.reservation
        self.res[fx.reservation] = MRes(fx.reservation, fx.task, fx.agent, deadline)
        self.offers += 1

    def has_hard_skills(self, a: MAgent, t: MTask) -> bool:
        """Does the agent have every hard skill the task asks for, at its minimum?"""
        hard = self.policy.skills_hard
        return all(a.skills.get(n, 0) >= m for n, m in t.skills.items() if n in hard)

    def _hard_filter(self, t: MTask, agent: str, fx: Effect) -> None:
        tier = self.agents[agent].tier
        if not self.policy.allowed(t.group, tier):
            self.fail(f"{fx}: HARD FILTER - group {t.group} handed to tier {tier}")

    def _presence(self, op: str, fx: PresenceChanged, now: int) -> None:
        a = self.agents.get(fx.agent)
        if a is None:
            self.fail(f"{fx}: presence of an unknown agent")
            return
        if fx.state == a.shown:
            self.fail(f"{fx}: shown state did not change")
        if fx.state == "offline" and a.chosen != "offline":
            if op not in ("logout", "tick"):
                self.fail(f"{fx}: only logout and tick take an agent offline")
            if op == "tick" and a.exp > now:
                self.fail(f"{fx}: presence expired early (exp {a.exp}, now {now})")
            a.chosen, a.exp = "offline", 0
        expected = shown_state(a.chosen, sum(self.load(a.id).values()), self.wrapups(a.id))
        if fx.state != expected:
            self.fail(
                f"{fx}: expected {expected} (chosen {a.chosen}, load {self.load(a.id)},"
                f" wrapups {self.wrapups(a.id)})"
            )
        a.shown = fx.state

    def _ended(self, op: str, fx: TaskEnded, revoked_holder: Mapping[str, str]) -> None:
        t = self.tasks.get(fx.task)
        if t is None:
            self.fail(f"{fx}: end of a task that does not exist")
            return
        if fx.reason == "completed":
            ends_wrapup = op == "reclassify" and revoked_holder.get(fx.task) == fx.agent
            if op not in ("complete", "wrapup_done", "tick") and not ends_wrapup:
                self.fail(f"{fx} from {op}")
            ok = t.state == "wrapup" or (op == "complete" and t.state == "assigned")
            if not ok or t.agent != fx.agent:
                self.fail(f"{fx}: the task was {t.state} by {t.agent or '-'}")
        elif fx.reason == "abandoned":
            if op != "withdraw":
                self.fail(f"{fx} from {op}")
            if t.state != "queued":
                self.fail(f"{fx}: an answered task was abandoned ({t.state} by {t.agent})")
            if (fx.agent or "") != revoked_holder.get(fx.task, ""):
                self.fail(f"{fx}: the agent should be the revoked holder")
        else:
            self.fail(f"{fx}: unknown reason")
        self._ended_channel[t.id] = t.channel
        del self.tasks[t.id]
        self.ended[t.id] = fx.reason

    def _spend(self, res_id: str) -> None:
        del self.res[res_id]
        self.spent_res.add(res_id)

    # -- lookups ---------------------------------------------------------------------------------

    def _live_res(self, res_id: str, agent: str) -> MRes:
        res = self.res.get(res_id)
        if res is None or res.agent != agent:
            self.fail(f"reservation {res_id} of {agent} is not live in the model ({res})")
        assert res is not None
        t = self.tasks.get(res.task)
        if t is None or t.state != "reserved" or t.res != res_id or t.agent != agent:
            self.fail(f"reservation {res_id}: its task is {t}")
        return res

    def _held(self, task: str, agent: str, state: str) -> MTask:
        t = self.tasks.get(task)
        if t is None or t.agent != agent or t.state != state:
            self.fail(f"task {task} is not {state} by {agent} in the model ({t})")
        assert t is not None
        return t

    # -- whole-state comparison ------------------------------------------------------------------

    def check_dump(self, dump: Mapping[str, Any], label: str = "dump") -> None:
        """The engine's dump() agrees with the model, and loads equal the held tasks."""
        self.where = label
        tasks: Mapping[str, Mapping[str, Any]] = dump["tasks"]
        agents: Mapping[str, Mapping[str, Any]] = dump["agents"]
        if set(tasks) != set(self.tasks):
            lost = sorted(set(self.tasks) - set(tasks))
            extra = sorted(set(tasks) - set(self.tasks))
            self.fail(f"tasks differ: LOST (alive, not in dump) {lost}; unexpected {extra}")
        missing = self.enqueued - set(self.tasks) - set(self.ended)
        if missing:
            self.fail(f"LOST tasks: neither alive nor ended {sorted(missing)}")
        held: dict[str, dict[str, int]] = {a: dict.fromkeys(CHANNELS, 0) for a in agents}
        wrapups: dict[str, int] = dict.fromkeys(agents, 0)
        for task_id, view in tasks.items():
            mine = self.tasks[task_id]
            got = (view["state"], view["agent"], view["res"], view["group"], view["channel"])
            want = (mine.state, mine.agent, mine.res, mine.group, mine.channel)
            if got != want:
                self.fail(
                    f"task {task_id}: dump (state, agent, res, group, channel) {got} != {want}"
                )
            if view["state"] in HELD:
                if view["agent"] not in held:
                    self.fail(f"task {task_id} held by unknown agent {view['agent']}")
                held[view["agent"]][view["channel"]] += 1
                if view["state"] == "wrapup":
                    wrapups[view["agent"]] += 1
                elif not self.policy.allowed(view["group"], agents[view["agent"]]["tier"]):
                    self.fail(f"task {task_id} ({view['group']}) held by {agents[view['agent']]}")
            elif view["agent"] or view["res"]:
                self.fail(f"queued task {task_id} has a holder: {view}")
        if set(agents) != set(self.agents):
            self.fail(f"agents differ: {sorted(agents)} != {sorted(self.agents)}")
        for agent_id, view in agents.items():
            load = {c: int(view["load"].get(c, 0)) for c in CHANNELS}
            if load != held[agent_id]:
                self.fail(f"agent {agent_id}: LOAD {load} != held tasks {held[agent_id]}")
            if int(view["wrapups"]) != wrapups[agent_id]:
                self.fail(f"agent {agent_id}: wrapups {view['wrapups']} != {wrapups[agent_id]}")
            a = self.agents[agent_id]
            if a.over_cap_ok and all(load[c] <= a.cap.get(c, 0) for c in CHANNELS):
                a.over_cap_ok = False
            for c in CHANNELS:
                if load[c] > int(view["cap"].get(c, 0)) and not a.over_cap_ok:
                    self.fail(f"agent {agent_id}: CAPACITY {c} load {load} cap {view['cap']}")
            holding = sorted(t.id for t in self.tasks.values() if t.agent == agent_id)
            if "tasks" in view and list(view["tasks"]) != holding:
                self.fail(f"agent {agent_id}: tasks {view['tasks']} != held {holding}")
            mine = (a.tier, a.cap, a.chosen, a.shown, a.exp)
            got = (view["tier"], dict(view["cap"]), view["chosen"], view["state"], view["exp_ms"])
            if got != mine:
                self.fail(f"agent {agent_id}: (tier, cap, chosen, shown, exp) {got} != {mine}")
        if set(self.res) != {t.res for t in self.tasks.values() if t.res}:
            self.fail(f"reservations {sorted(self.res)} do not match the reserved tasks")
