"""Refused operations raise the right `queues.errors` class and change nothing at all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from queues.base import RoutingEngine
from queues.errors import Conflict, Expired, Forbidden, Invalid, NotFound, RoutingError
from tests.conformance.helpers import agent, res_of
from tests.support import FakeClock

Ctx = dict[str, Any]
Call = Callable[[RoutingEngine, Ctx], Awaitable[object]]


async def _scenario(engine: RoutingEngine) -> Ctx:
    """trn reserves `res`; pam holds `asg` (assigned) and `wrap` (wrap-up); `q` waits for a SAM."""
    await agent(engine, "trn", "TRN")
    await agent(engine, "pam", "PAM")
    await agent(engine, "away", "CCS", available=False)
    await agent(engine, "off", "TRN")
    await engine.logout("off")
    await agent(engine, "full", "PAM", {"chat": 0, "sms": 0, "email": 0, "voice": 0})
    ctx: Ctx = {}
    ctx["r_res"] = res_of(await engine.enqueue("res", "c-res", "chat"), "res")
    await engine.accept(res_of(await engine.enqueue("asg", "c-asg", "chat", "SIC"), "asg"), "pam")
    await engine.accept(
        res_of(await engine.enqueue("wrap", "c-wrap", "email", "SIC"), "wrap"), "pam"
    )
    await engine.complete("wrap", "pam")
    assert await engine.enqueue("q", "c-q", "voice", "CSC") == []
    return ctx


CASES: list[tuple[str, type[RoutingError], Call]] = [
    # login / presence / heartbeat / logout
    ("login-tier-change-reserved", Conflict, lambda e, c: e.login("trn", "SAM")),
    ("login-tier-change-assigned", Conflict, lambda e, c: e.login("pam", "SAM")),
    ("presence-unknown", NotFound, lambda e, c: e.set_presence("ghost", "available")),
    ("presence-offline", Conflict, lambda e, c: e.set_presence("off", "away")),
    ("heartbeat-unknown", NotFound, lambda e, c: e.heartbeat("ghost")),
    ("heartbeat-offline", Conflict, lambda e, c: e.heartbeat("off")),
    ("logout-unknown", NotFound, lambda e, c: e.logout("ghost")),
    # enqueue
    ("enqueue-existing", Conflict, lambda e, c: e.enqueue("q", "other", "chat")),
    ("enqueue-existing-assigned", Conflict, lambda e, c: e.enqueue("asg", "c-asg", "chat")),
    # accept / reject
    ("accept-unknown", NotFound, lambda e, c: e.accept("R424242", "trn")),
    ("accept-other-agent", Forbidden, lambda e, c: e.accept(c["r_res"], "pam")),
    ("reject-unknown", NotFound, lambda e, c: e.reject("R424242", "trn")),
    ("reject-other-agent", Forbidden, lambda e, c: e.reject(c["r_res"], "pam")),
    # complete / wrapup_done
    ("complete-unknown", NotFound, lambda e, c: e.complete("ghost", "pam")),
    ("complete-other-agent", Forbidden, lambda e, c: e.complete("asg", "trn")),
    ("complete-reserved", Conflict, lambda e, c: e.complete("res", "trn")),
    ("complete-in-wrapup", Conflict, lambda e, c: e.complete("wrap", "pam")),
    ("wrapup-done-unknown", NotFound, lambda e, c: e.wrapup_done("ghost", "pam")),
    ("wrapup-done-other-agent", Forbidden, lambda e, c: e.wrapup_done("wrap", "trn")),
    ("wrapup-done-assigned", Conflict, lambda e, c: e.wrapup_done("asg", "pam")),
    ("wrapup-done-reserved", Conflict, lambda e, c: e.wrapup_done("res", "trn")),
    # withdraw
    ("withdraw-unknown", NotFound, lambda e, c: e.withdraw("ghost")),
    ("withdraw-assigned", Conflict, lambda e, c: e.withdraw("asg")),
    ("withdraw-wrapup", Conflict, lambda e, c: e.withdraw("wrap")),
    # transfer
    ("transfer-unknown-task", NotFound, lambda e, c: e.transfer("ghost", "pam", to_tier="SAM")),
    ("transfer-not-holder", Forbidden, lambda e, c: e.transfer("asg", "trn", to_tier="SAM")),
    ("transfer-reserved", Conflict, lambda e, c: e.transfer("res", "trn", to_tier="CCS")),
    ("transfer-wrapup", Conflict, lambda e, c: e.transfer("wrap", "pam", to_tier="SAM")),
    ("transfer-unknown-agent", NotFound, lambda e, c: e.transfer("asg", "pam", to_agent="ghost")),
    ("transfer-to-self", Conflict, lambda e, c: e.transfer("asg", "pam", to_agent="pam")),
    ("transfer-forbidden-agent", Forbidden, lambda e, c: e.transfer("asg", "pam", to_agent="trn")),
    ("transfer-forbidden-away", Forbidden, lambda e, c: e.transfer("asg", "pam", to_agent="away")),
    ("transfer-forbidden-tier", Forbidden, lambda e, c: e.transfer("asg", "pam", to_tier="CCS")),
    ("transfer-trn-tier", Forbidden, lambda e, c: e.transfer("asg", "pam", to_tier="TRN")),
    ("transfer-full-agent", Conflict, lambda e, c: e.transfer("asg", "pam", to_agent="full")),
    ("transfer-offline-agent", Conflict, lambda e, c: e.transfer("res", "trn", to_agent="off")),
    # malformed arguments
    ("invalid-tier", Invalid, lambda e, c: e.login("x", "BOSS")),
    ("invalid-capacity-channel", Invalid, lambda e, c: e.login("x", "TRN", {"fax": 1})),
    ("invalid-capacity-negative", Invalid, lambda e, c: e.login("x", "TRN", {"chat": -1})),
    ("invalid-capacity-bool", Invalid, lambda e, c: e.login("x", "TRN", {"chat": True})),
    ("invalid-empty-agent", Invalid, lambda e, c: e.login("", "TRN")),
    ("invalid-long-agent", Invalid, lambda e, c: e.login("a" * 201, "TRN")),
    ("invalid-presence-offline", Invalid, lambda e, c: e.set_presence("trn", "offline")),
    ("invalid-presence-busy", Invalid, lambda e, c: e.set_presence("trn", "busy")),
    ("invalid-channel", Invalid, lambda e, c: e.enqueue("n", "c", "fax")),
    ("invalid-group", Invalid, lambda e, c: e.enqueue("n", "c", "chat", "VIP")),
    ("invalid-empty-task", Invalid, lambda e, c: e.enqueue("", "c", "chat")),
    ("invalid-empty-customer", Invalid, lambda e, c: e.enqueue("n", "", "chat")),
    ("invalid-last-agent", Invalid, lambda e, c: e.enqueue("n", "c", "chat", last_agent="")),
    ("invalid-transfer-both", Invalid, lambda e, c: e.transfer("asg", "pam", "x", "SAM")),
    ("invalid-transfer-neither", Invalid, lambda e, c: e.transfer("asg", "pam")),
    ("invalid-transfer-tier", Invalid, lambda e, c: e.transfer("asg", "pam", to_tier="BOSS")),
    ("invalid-reclassify-group", Invalid, lambda e, c: e.reclassify("c-asg", "VIP")),
    ("invalid-reservation", Invalid, lambda e, c: e.accept("", "trn")),
]


@pytest.mark.parametrize(("error", "call"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_refused_operations_change_nothing(
    engine: RoutingEngine, error: type[RoutingError], call: Call
) -> None:
    ctx = await _scenario(engine)
    before = await engine.dump()
    stats_before = await engine.queue_stats()
    with pytest.raises(error) as info:
        await call(engine, ctx)
    assert type(info.value) is error
    assert info.value.code == error.code
    assert await engine.dump() == before
    assert await engine.queue_stats() == stats_before


@pytest.mark.parametrize("op", ["accept", "reject"])
async def test_expired_reservations_are_refused(
    engine: RoutingEngine, clock: FakeClock, op: str
) -> None:
    ctx = await _scenario(engine)
    clock.advance(25)
    before = await engine.dump()
    with pytest.raises(Expired) as info:
        await getattr(engine, op)(ctx["r_res"], "trn")
    assert info.value.code == "expired"
    assert await engine.dump() == before
