"""Prometheus metrics: the app's counters and gauges, and the text one `/metrics` scrape returns.

`Metrics` keeps its own `CollectorRegistry` (several apps in one process don't clash); the rest
of the server only calls its counting methods, with labels from fixed sets so no id ever
becomes a label. A scrape adds gauges read from the engine's `queue_stats()` just before
(`exposition`), so queue figures are never older than the scrape.

Imports `prometheus_client` and the engine's `QueueStats` shape; not aiohttp (the route is in
`router.ops`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from queues.effects import QueueStats

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
INGEST_RESULTS = ("accepted", "duplicate", "refused")
SOCKET_KINDS = ("agent", "ops", "chat")
_REASON = re.compile(r"[a-z_]{1,32}")


class Metrics:
    """The app's counters, in its own `CollectorRegistry` (several apps per process don't clash).

    Other modules call these methods; labels are fixed sets (or ids from the settings), so no
    client-given id ever becomes a label:

    * `ingested(result, n=1)` — `/v1/events`: `accepted` or `duplicate` (events), or a refusal
      reason such as `bad_signature` (requests; counted as `refused` and by reason)
    * `offered(n=1)` — offers made to agents
    * `sent(kind, n=1)` — frames written to sockets of kind `agent`, `ops` or `chat`
    * `session(kind)` — context manager around a socket's life (the `ws_sessions` gauge)
    * `dropped(kind)` — a socket closed because it could not keep up
    * `guided(kind, rule)` — an `alert` or `suggestion` of a `[[guidance.rules]]` rule shown
    * `outcome(rule, offer, outcome)` — an agent's `suggestion.outcome`
    """

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self._ingested = Counter(
            "omniroute_events_ingested", "Ingest events", ["result"], registry=r
        )
        self._refused = Counter("omniroute_ingest_refused", "Refusals", ["reason"], registry=r)
        self._offers = Counter("omniroute_offers", "Offers made to agents", registry=r)
        self._frames = Counter("omniroute_frames_sent", "Frames written", ["kind"], registry=r)
        self._sessions = Gauge("omniroute_ws_sessions", "Open sockets", ["kind"], registry=r)
        self._dropped = Counter("omniroute_ws_dropped", "Sockets too slow", ["kind"], registry=r)
        # rule and offer ids come from the settings (a bounded set), never from a client
        self._guided = Counter(
            "omniroute_guidance_shown", "Alerts and suggestions shown", ["kind", "rule"], registry=r
        )
        self._outcomes = Counter(
            "omniroute_suggestion_outcomes",
            "Suggestion outcomes agents reported",
            ["rule", "offer", "outcome"],
            registry=r,
        )
        # the children, made once: labels() per call costs a lock and a lookup on hot paths
        self._ingested_by = {
            result: self._ingested.labels(result=result) for result in INGEST_RESULTS
        }
        self._frames_by = {kind: self._frames.labels(kind=kind) for kind in SOCKET_KINDS}
        for kind in SOCKET_KINDS:
            self._sessions.labels(kind=kind)
            self._dropped.labels(kind=kind)

    def ingested(self, result: str, n: int = 1) -> None:
        """`accepted`/`duplicate` count events; any other value is a refusal reason (one
        request), counted as `refused` and by reason. Fits `router.ingest`'s `on_result`."""
        if result in ("accepted", "duplicate"):
            self._ingested_by[result].inc(n)
            return
        if not _REASON.fullmatch(result):
            raise ValueError("a refusal reason is 1-32 of a-z and _")
        self._ingested.labels(result="refused").inc(n)
        self._refused.labels(reason="other" if result == "refused" else result).inc(n)

    def offered(self, n: int = 1) -> None:
        self._offers.inc(n)

    def guided(self, kind: str, rule: str) -> None:
        """An `alert` or `suggestion` of a configured rule was shown to an agent."""
        self._guided.labels(kind=kind, rule=rule).inc()

    def outcome(self, rule: str, offer: str, outcome: str) -> None:
        """An agent answered a suggestion (`accepted` or `declined`) of a configured offer."""
        self._outcomes.labels(rule=rule, offer=offer, outcome=outcome).inc()

    def sent(self, kind: str, n: int = 1) -> None:
        child = self._frames_by.get(kind)
        if child is None:
            raise ValueError(f"kind must be one of {', '.join(SOCKET_KINDS)}")
        child.inc(n)

    def dropped(self, kind: str) -> None:
        self._dropped.labels(kind=_kind(kind)).inc()

    @contextlib.contextmanager
    def session(self, kind: str) -> Iterator[None]:
        gauge = self._sessions.labels(kind=_kind(kind))
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def exposition(self, stats: list[QueueStats] | None) -> bytes:
        """The scrape's text: these counters plus queue gauges from `stats` (None: the engine
        did not answer, so `omniroute_engine_up` is 0 and the queue gauges are absent)."""
        return generate_latest(_Scrape(self.registry, stats))


def _kind(kind: str) -> str:
    if kind not in SOCKET_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SOCKET_KINDS)}")
    return kind


class _Scrape(Collector):
    """One scrape: the app's registry plus gauges from `queue_stats()` read just before."""

    def __init__(self, registry: CollectorRegistry, stats: list[QueueStats] | None) -> None:
        self.registry = registry
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        yield from self.registry.collect()
        up = GaugeMetricFamily("omniroute_engine_up", "1 when the engine answered the scrape")
        up.add_metric([], 0 if self.stats is None else 1)
        yield up
        if self.stats is None:
            return
        q = ["queue"]
        waiting = GaugeMetricFamily("omniroute_queue_waiting", "Tasks waiting", labels=q)
        longest = GaugeMetricFamily(
            "omniroute_queue_longest_wait_seconds", "Wait of the oldest waiting task", labels=q
        )
        agents = GaugeMetricFamily(
            "omniroute_queue_agents",
            "Logged-in agents serving the queue, by tier and state",
            labels=["queue", "tier", "state"],
        )
        counters = {
            key: CounterMetricFamily(f"omniroute_queue_{key}", doc, labels=q)
            for key, doc in (
                ("offered", "Offers made for the queue's tasks"),
                ("answered", "Tasks accepted by an agent"),
                ("answered_in_threshold", "Tasks accepted within the service-level threshold"),
                ("abandoned", "Tasks withdrawn before an agent took them"),
            )
        }
        for row in self.stats:
            waiting.add_metric([row.name], row.waiting)
            longest.add_metric([row.name], row.longest_wait_s)
            for tier, states in row.agents.items():
                for state, count in states.items():
                    agents.add_metric([row.name, tier, state], count)
            for key, family in counters.items():
                family.add_metric([row.name], getattr(row, key))
        yield from (waiting, longest, agents, *counters.values())
