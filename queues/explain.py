"""Explain: a conversation's routing story, from an engine's raw `why` view (both engines).

`explain(raw, policy, conversation, now_ms)` gives the answer of `GET /v1/conversations/{id}/why`
(DESIGN.md, "Explain and replay"; docs/explain.md shows one)::

    {"conversation", "state", "group",
     "decisions": [{"at", "kind", "reason", "agent"?, "tier"?, "task", "channel"}],
     "waiting": null | {"task", "channel", "waited_s", "eligible_now": [tier],
                        "next": [{"tier", "at"}], "agents": {tier: {state: n}},
                        "who": {tier: {state: [agent]}}, "position": n, "held_for"?}}

Level openings are derived, not stored: a tier whose level `L > 0` in the task's client group
opened at `enq + L` if the task was still unanswered then. With `open_empty_levels` a tier can
take work earlier (no agent of an earlier level logged in); the offer's reason says so.

Agent states in `waiting`, first that applies: `excluded` (it rejected the task or let the offer
time out), `missing_skill` (it lacks a hard skill the task asks for, or a proficiency below
the minimum: never), `away` (chosen away, or its presence lapsed), `preferred_skill` (it lacks
a preferred skill the task asks for; the task widens to it after `skills_widen_s`),
`available` (free capacity on this
channel: next in line for it once the tier is open), `voice_call` (a call blocks this
channel), `wrapup` (every task it holds is in wrap-up), `at_capacity`. Only tiers the client
group allows ever appear: the engines do not even read out other agents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from queues.policy import TIERS, Policy

OFFER_WHY = {
    "longest_idle": "longest idle of the ready agents of the tiers open to it",
    "last_agent": "the agent who last served this customer (last-agent preference)",
    "next_in_line": "it became free and this was the first task in line it may take",
    "transfer": "transferred to this agent",
    "outbound": "a campaign contact, to an agent with no work and no inbound work it may take",
}
REQUEUE_WHY = {
    "withdrawn": "its agent logged out or went offline before answering",
    "released": "its agent's desktop stayed away too long; the conversation went back in line",
    "reclassified": "its agent's tier may no longer hold this client group",
    "preference_ended": "the last agent did not become free in time",
    "last_agent_left": "the last agent it was held for went offline",
}


def iso_ms(ms: int | float) -> str:
    """RFC 3339 UTC with milliseconds."""
    stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _as_map(value: Any) -> dict[str, Any]:
    """Lua's cmsgpack packs an empty table as an array: an empty map here."""
    return dict(value) if isinstance(value, Mapping) else {}


def explain(
    raw: Mapping[str, Any], policy: Policy, conversation: str, now_ms: int
) -> dict[str, Any]:
    """The endpoint's answer from `RoutingEngine.why_raw` (see the module docstring)."""
    traces: list[tuple[str, list[Any], bool]] = []
    for field, rows in sorted(_as_map(raw.get("kept")).items(), key=lambda kv: _enq_of(kv[0])):
        traces.append((field.rsplit("@", 1)[0], list(rows), False))
    live = list(raw.get("live") or [])
    for item in live:
        traces.append((str(item["view"]["id"]), list(item["trace"]), True))
    decisions: list[tuple[int, int, dict[str, Any]]] = []
    order = 0
    for task_id, rows, is_live in traces:
        for row in _decisions(task_id, rows, policy, now_ms if is_live else None):
            decisions.append((row.pop("_at"), order, row))
            order += 1
    decisions.sort(key=lambda d: (d[0], d[1]))
    waits = list(raw.get("waiting") or [])
    main = next((i["view"] for i in live if i["view"]["id"] == conversation), None)
    state = "ended"
    group = None
    if main is not None or live:
        view = main or live[0]["view"]
        state, group = _state_of(view), view["group"]
    elif traces:
        group = _group_of(traces[-1][1])
    return {
        "conversation": conversation,
        "state": state,
        "group": group,
        "decisions": [d for _, _, d in decisions],
        "waiting": _waiting(waits[0], policy, now_ms) if waits else None,
    }


def _enq_of(field: str) -> int:
    try:
        return int(field.rsplit("@", 1)[1])
    except (IndexError, ValueError):
        return 0


def _state_of(view: Mapping[str, Any]) -> str:
    state = str(view["state"])
    return {"queued": "waiting", "reserved": "offered"}.get(state, state)


def _group_of(rows: Sequence[Any]) -> str | None:
    group = None
    for _at, kind, _agent, detail in rows:
        if kind == "enqueued":
            group = _as_map(detail).get("grp")
        elif kind == "reclassified":
            group = str(detail).split(">", 1)[1]
    return group


def _decisions(
    task_id: str, rows: Sequence[Any], policy: Policy, now_ms: int | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not rows:
        return out
    enq = int(rows[0][0])
    channel = ""
    group = "normal"
    answered_at: int | None = None
    for at, kind, agent, detail in rows:
        at = int(at)
        row: dict[str, Any] = {"_at": at, "at": iso_ms(at), "kind": kind, "task": task_id}
        if agent:
            row["agent"] = agent
        if kind == "enqueued":
            info = _as_map(detail)
            channel, group = str(info.get("ch", "")), str(info.get("grp", "normal"))
            rules = list(info.get("rules") or [])
            open_now = [
                t for t in TIERS if policy.allowed(group, t) and _level(policy, group, t) == 0
            ]
            row["reason"] = (
                f"{channel} work of a {group} customer, priority {info.get('prio', 0)}"
                + (f" (rules: {'; '.join(rules)})" if rules else " (no priority rule matched)")
                + f"; open at once to {', '.join(open_now) or 'no tier'}"
                + (f"; waits {policy.last_agent_s:g} s for its last agent" if agent else "")
            )
            row["priority"], row["rules"] = info.get("prio", 0), rules
        elif kind == "offered":
            why, _, tier = str(detail).partition("|")
            row["tier"] = tier
            reason = OFFER_WHY.get(why, why)
            if why in ("longest_idle", "next_in_line") and at - enq < _level(policy, group, tier):
                reason += "; its level opened early: no agent of an earlier level was logged in"
            row["reason"], row["why"] = reason, why
        elif kind == "held":
            why, _, until = str(detail).partition("|")
            state = "busy with other work" if why == "busy" else "not available"
            row["reason"] = f"held for its last agent, {state}, until {iso_ms(int(until or at))}"
        elif kind == "rejected":
            row["reason"] = "the agent rejected it; it is excluded from this task from now on"
        elif kind == "timed_out":
            row["reason"] = (
                f"no answer within {policy.reservation_timeout_s:g} s: the agent is excluded "
                "from this task and was set away"
            )
        elif kind == "requeued":
            row["reason"] = REQUEUE_WHY.get(str(detail), str(detail))
        elif kind == "assigned":
            row["reason"] = f"accepted after {(at - enq) / 1000:g} s in line"
            answered_at = answered_at if answered_at is not None else at
        elif kind == "completed":
            row["reason"] = "the agent completed it; wrap-up starts"
        elif kind == "transferred":
            to_kind, _, to = str(detail).partition(":")
            row["reason"] = f"transferred to {'agent' if to_kind == 'agent' else 'tier'} {to}"
            if to_kind == "tier":
                row["tier"] = to
        elif kind == "reclassified":
            old, _, new = str(detail).partition(">")
            row["reason"] = f"client group {old} → {new}"
            group = new
        elif kind == "ended":
            row["reason"] = (
                "wrap-up over" if detail == "completed" else "the customer left before an answer"
            )
            answered_at = answered_at if answered_at is not None else at
        else:
            row["reason"] = str(detail)
        row["channel"] = channel
        out.append(row)
    end = answered_at if answered_at is not None else (now_ms if now_ms is not None else enq)
    out.extend(_openings(task_id, channel, rows, policy, enq, end))
    return out


def _level(policy: Policy, group: str, tier: str) -> int:
    return round(policy.levels.get(group, {}).get(tier, 0) * 1000)


def _openings(
    task_id: str, channel: str, rows: Sequence[Any], policy: Policy, enq: int, end: int
) -> list[dict[str, Any]]:
    """Each later level that opened while the task was unanswered (derived, exact)."""
    out: list[dict[str, Any]] = []
    for tier in TIERS:
        at = None
        for group in _groups_over(rows):
            lvl = _level(policy, group[0], tier)
            if policy.allowed(group[0], tier) and lvl > 0 and group[1] <= enq + lvl < group[2]:
                at, grp, secs = enq + lvl, group[0], lvl / 1000
        if at is None or at > end:
            continue
        out.append(
            {
                "_at": at,
                "at": iso_ms(at),
                "kind": "level_opened",
                "tier": tier,
                "task": task_id,
                "channel": channel,
                "reason": f"waited {secs:g} s: [levels.{grp}] {tier} = {secs:g}",
            }
        )
    return out


def _groups_over(rows: Sequence[Any]) -> list[tuple[str, int, float]]:
    """(group, from_ms, until_ms) spans of the task's client group."""
    spans: list[tuple[str, int, float]] = []
    for at, kind, _agent, detail in rows:
        if kind == "enqueued":
            spans.append((str(_as_map(detail).get("grp", "normal")), int(at), float("inf")))
        elif kind == "reclassified" and spans:
            group, start, _ = spans[-1]
            spans[-1] = (group, start, int(at))
            spans.append((str(detail).split(">", 1)[1], int(at), float("inf")))
    return spans


def agent_state(row: Sequence[Any], channel: str, policy: Policy, now_ms: int) -> str:
    """Why a logged-in agent of an eligible tier is not taking the task (module docstring)."""
    _id, _tier, chosen, shown, free, on_voice, exp, excluded = row[:8]
    fits_at = int(row[8]) if len(row) > 8 else 0
    if excluded:
        return "excluded"
    if fits_at < 0:
        return "missing_skill"
    if chosen != "available" or int(exp) <= now_ms:
        return "away"
    if fits_at > now_ms:
        return "preferred_skill"
    if int(free) > 0:
        return "available"
    if on_voice and channel != "voice" and channel in policy.voice_blocks:
        return "voice_call"
    if shown == "wrapup":
        return "wrapup"
    return "at_capacity"


def _waiting(w: Mapping[str, Any], policy: Policy, now_ms: int) -> dict[str, Any]:
    opens = _as_map(w.get("opens"))
    eligible = list(w.get("eligible") or [])
    tiers = [t for t in TIERS if t in opens] or ([w["restrict"]] if w.get("restrict") else [])
    agents: dict[str, dict[str, int]] = {t: {} for t in tiers}
    who: dict[str, dict[str, list[str]]] = {t: {} for t in tiers}
    for row in w.get("agents") or []:
        tier = str(row[1])
        if tier not in agents:
            continue  # never happens: the engines read out allowed tiers only
        state = agent_state(row, str(w["channel"]), policy, now_ms)
        agents[tier][state] = agents[tier].get(state, 0) + 1
        who[tier].setdefault(state, []).append(str(row[0]))
    upcoming = sorted(
        (int(at), tier) for tier, at in opens.items() if tier not in eligible and int(at) > now_ms
    )
    out: dict[str, Any] = {
        "task": w["task"],
        "channel": w["channel"],
        "waited_s": round((now_ms - int(w["enq_ms"])) / 1000, 3),
        "eligible_now": eligible,
        "next": [{"tier": tier, "at": iso_ms(at)} for at, tier in upcoming],
        "agents": agents,
        "who": who,
        "position": w.get("position") or None,
    }
    if w.get("held_for"):
        out["held_for"] = w["held_for"]
        out["held_until"] = iso_ms(int(w["pref_until"]))
    return out
