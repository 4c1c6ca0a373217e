"""A recorded day built from a seed: the benchmark's replay input and a demo recording.

`recorded_day(agents, conversations, seed)` makes a centre's day — staff in shifts with
breaks, traffic with a morning and an evening peak over 16 hours, every channel, some SIC and
CSC customers, customers with limited patience — and *records* it: the day runs through the
memory engine under the shipped policy (`replay.simulate`), and what the engine kept
(`queues.trace`) is the recording, exactly as a serving node would have kept it. The same
seed gives the same recording.
"""

from __future__ import annotations

import math
import random
import time

from queues.policy import Policy
from replay.model import Conversation, Scenario
from replay.recording import Recording, from_engine
from replay.simulate import Replay

HOUR_MS = 3_600_000
DAY_START_MS = 1_800_000_000_000  # any fixed origin: the replay depends on differences only
OPEN_HOURS = 16
TIER_SHARE = (("TRN", 0.2), ("CCS", 0.4), ("PAM", 0.25), ("SAM", 0.15))
CHANNEL_MIX = (("chat", 0.6), ("sms", 0.15), ("email", 0.15), ("voice", 0.1))
HANDLE_S = {"chat": 300.0, "sms": 240.0, "email": 360.0, "voice": 240.0}  # means
GROUP_MIX = (("normal", 0.9), ("SIC", 0.08), ("CSC", 0.02))


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    x, total = rng.random(), 0.0
    for name, share in table:
        total += share
        if x < total:
            return name
    return table[-1][0]


def _rate_shape(hour: float) -> float:
    """Relative arrival rate over the open hours: peaks at 10:00 and 19:00."""
    return 0.4 + math.exp(-((hour - 4) ** 2) / 4) + 0.8 * math.exp(-((hour - 13) ** 2) / 3)


def day_scenario(agents: int, conversations: int, seed: int) -> Scenario:
    rng = random.Random(seed)
    actions: list[list[object]] = []
    for i in range(agents):
        agent = f"a{i:04d}"
        tier = _pick(rng, TIER_SHARE)
        start = DAY_START_MS + int(rng.uniform(0, OPEN_HOURS - 8) * HOUR_MS)
        end = start + 8 * HOUR_MS
        caps = "chat=3,sms=3,email=5,voice=1"
        actions.append([start, "login", agent, f"{tier}|{caps}"])
        actions.append([start + rng.randint(5_000, 60_000), "presence", agent, "available"])
        for brk in (2.5, 5.5):  # two breaks of 15 minutes
            away = start + int((brk + rng.uniform(-0.3, 0.3)) * HOUR_MS)
            actions.append([away, "presence", agent, "away"])
            actions.append([away + 900_000, "presence", agent, "available"])
        actions.append([end, "logout", agent, ""])
    actions.sort(key=lambda row: (row[0], str(row[2])))
    # arrivals: a thinned Poisson process following the rate shape
    peak = max(_rate_shape(h / 10) for h in range(OPEN_HOURS * 10))
    mean_gap_ms = OPEN_HOURS * HOUR_MS / conversations
    weights = sum(_rate_shape(h / 10) for h in range(OPEN_HOURS * 10)) / (OPEN_HOURS * 10)
    convs: list[Conversation] = []
    t = float(DAY_START_MS)
    while len(convs) < conversations:
        t += rng.expovariate(peak / (weights * mean_gap_ms))
        hour = (t - DAY_START_MS) / HOUR_MS
        if hour >= OPEN_HOURS:
            t = float(DAY_START_MS)
            continue
        if rng.random() > _rate_shape(hour) / peak:
            continue
        channel = _pick(rng, CHANNEL_MIX)
        n = len(convs)
        attrs = {"top_up": rng.random() < 0.1, "coins": rng.choice((0, 20, 150))}
        patience = int(rng.expovariate(1 / 180_000)) if channel in ("chat", "voice") else None
        conv = Conversation(
            id=f"k{n:06d}",
            customer=f"u{n:06d}",
            channel=channel,
            group=_pick(rng, GROUP_MIX),
            attrs=attrs,
            arrive_ms=int(t),
            abandon_ms=None if patience is None else int(t) + patience,
            accept_ms=rng.randint(1_000, 8_000),
            handle_ms=int(rng.expovariate(1 / (HANDLE_S[channel] * 1000))) + 10_000,
            wrap_ms=rng.randint(5_000, 40_000),
        )
        convs.append(conv)
    convs.sort(key=lambda c: (c.arrive_ms, c.id))
    times = [c.arrive_ms for c in convs] + [int(str(a[0])) for a in actions]
    return Scenario(convs, actions, 0, min(times), max(times))


async def recorded_day(
    agents: int = 200, conversations: int = 50_000, seed: int = 12, policy: Policy | None = None
) -> tuple[Recording, float]:
    """(the recording of a day, seconds it took to make it)."""
    started = time.perf_counter()
    policy = policy or Policy()
    run = Replay(policy, day_scenario(agents, conversations, seed))
    await run.run()
    recording = await from_engine(run.engine, exported_ms=run.now)
    recording.policy = policy
    return recording, time.perf_counter() - started
