"""Guidance: rule-based alerts and next-best offers for the agent who gets a conversation.

Rules are data in the settings (`[[guidance.rules]]`, never code): each has an `id`, a `kind`
(`alert` or `suggestion`) and `when`, conditions that must all hold — the same
(field, op, value) conditions as priority rules — over what the agent sees of the customer
(the profile, the counters, `age`, the editable fields) and the conversation (`channel`,
`waited_s` since the customer's last message, `contacts_today`: the customer's messages in
since midnight UTC, in the history the offer carries) and, for a campaign contact
(`router.campaigns`), `campaign` (its id), `direction` (`outbound`) and each of the contact's
attributes as `contact.<name>` — so win-back rules test the cancellation reason. An alert
carries `text` and `level` (`info` or `warning`); a suggestion carries an `offer` {id,
title, text} and a `weight`, and the suggestions of one moment are ranked by weight
(heaviest first, then by rule id).

They are evaluated when the conversation is offered and when it is assigned; the frames go
to that agent through its outbox like every frame, and carry the customer id, so the
send-time tier filter (`router.delivery`) holds them back from a tier that may not see the
customer. Logs name rules and offers by id, never customer content.

Pure: no I/O, no aiohttp. Imports `queues.policy` (the conditions) and
`router.settings_keys`/`router.settings_policy` (a rule's rows and conditions checked as the
priority rules' are, and their errors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from queues.policy import holds
from router.settings_keys import SettingsError, listing, show
from router.settings_policy import condition, rule_rows, table_row

KINDS: Final = ("alert", "suggestion")
LEVELS: Final = ("info", "warning")
OUTCOMES: Final = ("accepted", "declined")
MAX_RULES: Final = 1_000
MAX_TEXT: Final = 1_000
_KEYS: Final = ("id", "kind", "when", "text", "level", "offer", "weight")
_ID_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")

Frame = dict[str, Any]


@dataclass(frozen=True)
class Condition:
    """One condition of a rule's `when`: `attrs[field] <op> value`, with the operators and checks
    of a priority rule's (`queues.policy.holds`); a missing field never holds."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class GuidanceRule:
    """One `[[guidance.rules]]` row (see the module docstring)."""

    id: str
    kind: str
    when: tuple[Condition, ...]
    text: str = ""
    level: str = "info"
    offer: Mapping[str, str] | None = None
    weight: int = 0

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        return all(holds(c.field, c.op, c.value, attrs) for c in self.when)


def attributes(
    customer: Mapping[str, Any],
    channel: str | None,
    history: Sequence[Mapping[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """What the rules see: the customer object the agent sees, and the conversation's
    `channel`, `waited_s` and `contacts_today` from the history the offer carries."""
    attrs = dict(customer)
    attrs["channel"] = channel
    today = now.date().isoformat()
    inbound = [i for i in history if i.get("direction") == "in"]
    attrs["contacts_today"] = sum(1 for i in inbound if str(i.get("at", "")).startswith(today))
    if inbound:
        try:
            last = datetime.fromisoformat(str(inbound[-1]["at"]).replace("Z", "+00:00"))
            attrs["waited_s"] = max(0.0, (now - last).total_seconds())
        except (KeyError, ValueError):
            pass
    return attrs


class Guidance:
    """The rules of one server; `frames` gives what a conversation's agent is shown now."""

    def __init__(self, rules: Sequence[GuidanceRule] = ()) -> None:
        self.rules = tuple(rules)
        self.by_offer = {r.offer["id"]: r for r in self.rules if r.offer is not None}

    def frames(self, conversation: Mapping[str, Any], now: datetime | None = None) -> list[Frame]:
        """The `alert` and `suggestion` frames for a `conversation` object (as an offer or
        an assignment carries it): alerts in rule order, then suggestions by weight."""
        if not self.rules:
            return []
        customer = conversation.get("customer")
        if not isinstance(customer, Mapping) or "id" not in customer:
            return []
        attrs = attributes(
            customer,
            conversation.get("last_channel"),
            conversation.get("history") or [],
            now or datetime.now(UTC),
        )
        contact = conversation.get("contact")
        if isinstance(contact, Mapping):  # a campaign contact's offer or assignment
            campaign = conversation.get("campaign")
            attrs["campaign"] = campaign.get("id") if isinstance(campaign, Mapping) else None
            attrs["direction"] = "outbound"
            for name, value in (contact.get("attributes") or {}).items():
                attrs[f"contact.{name}"] = value
        conv_id, customer_id = conversation["id"], customer["id"]
        alerts: list[Frame] = []
        offers: list[GuidanceRule] = []
        for rule in self.rules:
            if not rule.matches(attrs):
                continue
            if rule.kind == "alert":
                alerts.append(
                    {
                        "type": "alert",
                        "conversation": conv_id,
                        "customer": customer_id,
                        "rule": rule.id,
                        "text": rule.text,
                        "level": rule.level,
                    }
                )
            else:
                offers.append(rule)
        offers.sort(key=lambda r: (-r.weight, r.id))
        suggestions: list[Frame] = [
            {
                "type": "suggestion",
                "conversation": conv_id,
                "customer": customer_id,
                "rule": rule.id,
                "offer": dict(rule.offer or {}),
                "rank": rank,
            }
            for rank, rule in enumerate(offers, 1)
        ]
        return alerts + suggestions


# -- reading the rules from the settings ------------------------------------------------------


def guidance_rules(table: Any) -> tuple[GuidanceRule, ...]:
    """The `[guidance]` table of one file: its `rules`, each checked; errors name the row."""
    rows = rule_rows(table, "guidance", MAX_RULES)
    rules = tuple(_rule(row, f"[[guidance.rules]] #{n}") for n, row in enumerate(rows, 1))
    seen: set[str] = set()
    offers: set[str] = set()
    for n, rule in enumerate(rules, 1):
        if rule.id in seen:
            raise SettingsError(f"[[guidance.rules]] #{n} id: {rule.id!r} is used twice")
        seen.add(rule.id)
        if rule.offer is not None:
            if rule.offer["id"] in offers:
                raise SettingsError(f"[[guidance.rules]] #{n} offer: id {rule.offer['id']!r} twice")
            offers.add(rule.offer["id"])
    return rules


def _an_id(value: Any, label: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or set(value) - _ID_CHARS:
        raise SettingsError(f"{label}: must be an id (1-64 letters, digits, _ . : -)")
    return value


def _a_text(value: Any, label: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
        raise SettingsError(f"{label}: must be a text of 1-{MAX_TEXT} characters")
    return value


def _rule(row: Any, label: str) -> GuidanceRule:
    row = table_row(row, label, _KEYS)
    rule_id = _an_id(row.get("id"), f"{label} id")
    kind = row.get("kind")
    if kind not in KINDS:
        raise SettingsError(f"{label} kind: must be one of {listing(KINDS)}, got {show(kind)}")
    when = row.get("when", [])
    if not isinstance(when, list):
        raise SettingsError(f"{label} when: must be a list of conditions {{field, op, value}}")
    conditions = tuple(_condition(c, f"{label} when #{i}") for i, c in enumerate(when, 1))
    if kind == "alert":
        for key in ("offer", "weight"):
            if key in row:
                raise SettingsError(f"{label} {key}: only a suggestion has one")
        level = row.get("level", "info")
        if level not in LEVELS:
            raise SettingsError(f"{label} level: must be one of {listing(LEVELS)}")
        return GuidanceRule(rule_id, kind, conditions, _a_text(row.get("text"), f"{label} text"),
                            level)  # fmt: skip
    for key in ("text", "level"):
        if key in row:
            raise SettingsError(f"{label} {key}: a suggestion's words are in its offer")
    offer = row.get("offer")
    if not isinstance(offer, dict) or set(offer) != {"id", "title", "text"}:
        raise SettingsError(f"{label} offer: must be a table of id, title, text")
    checked = {
        "id": _an_id(offer["id"], f"{label} offer.id"),
        "title": _a_text(offer["title"], f"{label} offer.title"),
        "text": _a_text(offer["text"], f"{label} offer.text"),
    }
    weight = row.get("weight", 0)
    if isinstance(weight, bool) or not isinstance(weight, int) or abs(weight) > 1_000_000:
        raise SettingsError(f"{label} weight: must be an integer, got {show(weight)}")
    return GuidanceRule(rule_id, kind, conditions, offer=checked, weight=weight)


def _condition(row: Any, label: str) -> Condition:
    if not isinstance(row, dict) or set(row) != {"field", "op", "value"}:
        raise SettingsError(f"{label}: must be a table of field, op, value, got {show(row)}")
    return Condition(*condition(row, label))
