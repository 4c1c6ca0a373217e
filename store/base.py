"""The store's contract: `Store`, the one interface of the event log, customers,
conversations, history, outgoing jobs and per-agent outboxes.

Two backends implement it: `store.memory.MemoryStore` (one process) and `store.redis.RedisStore`
(durable, shared by every router node); `tests/test_store.py` runs the same suite against both,
and `docs/server.md` describes how the server uses them. The rules both backends apply the same
way (validation, timestamps, threading order) are in `store.common`.

May import `store.model`, `store.errors`, `store.common` and `queues.errors.in_place`; never a
backend, never `router`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from queues.errors import in_place
from store.common import check_state
from store.errors import StoreError
from store.model import (
    Applied,
    Backlog,
    Beat,
    Conversation,
    Customer,
    InboundEvent,
    Ingested,
    Interaction,
    Job,
    LogEntry,
    Push,
    Reply,
    Wake,
)


class Tuning(TypedDict, total=False):
    """The limits every backend's constructor takes by keyword (`Store._tune`; None or left
    out: `Store`'s default)."""

    dedupe_s: int | None
    claim_idle_ms: int | None
    outbox_keep: int | None


class Store(ABC):
    """The storage contract; backends implement every abstract method.

    Guarantees every backend gives:

    * `ingest` is atomic per batch: every event is either new (deduplicated by event id for
      `dedupe_s`, and by email Message-ID), resolved to a customer and a conversation, and appended
      to the durable log — or a duplicate that changes nothing and reports the original's
      conversation. With Redis the log is a Stream: once `ingest` returns, the events survive the
      death of any router node.
    * The log is consumed through one consumer group: each entry goes to one consumer. Nodes hold a
      lease they renew (`beat`); the first live node to see a lease lapse takes the dead node's
      unacknowledged entries over (`read_log` hands them out first), forgets its desktops and names
      the agents connected nowhere else. Entries any consumer has held unacknowledged for
      `claim_idle_ms` are reclaimed as well (a node alive but stuck). A node killed mid-work delays
      events by about a lease, never loses them.
    * Fencing: a push that finishes log entries (`ack` with `consumer`) is refused `Fenced`, with
      nothing changed, unless every one of them is still held by that consumer — a node that was
      presumed dead and taken over never delivers what its successor delivers.
    * `apply_inbound` is idempotent per event id: re-applying a reclaimed entry appends nothing
      twice.
    * Customer edits are versioned: `update_customer` with a stale version raises `StaleVersion`
      carrying the current customer; nothing is overwritten silently.
    * Outboxes number frames per agent (`seq` 1, 2, 3 …) and keep the last `outbox_keep` of them;
      `since` says whether the gap after `seq` could be replayed in full.
    * Logs and caches hold identifiers only; bodies live in history alone.
    """

    dedupe_s: int = 86_400
    claim_idle_ms: int = 30_000
    outbox_keep: int = 1_000

    def _tune(self, tuning: Tuning) -> None:
        """The limits a backend was built with, over the defaults above (None: the default)."""
        if (dedupe_s := tuning.get("dedupe_s")) is not None:
            self.dedupe_s = dedupe_s
        if (claim_idle_ms := tuning.get("claim_idle_ms")) is not None:
            self.claim_idle_ms = claim_idle_ms
        if (outbox_keep := tuning.get("outbox_keep")) is not None:
            self.outbox_keep = outbox_keep

    async def start(self) -> None:  # noqa: B027 - the memory store has nothing to start
        """Connect, load scripts, create the consumer group. Idempotent."""

    async def close(self) -> None:  # noqa: B027
        """Release connections and subscriptions."""

    # -- ingest and the durable log ------------------------------------------------------------

    @abstractmethod
    async def ingest(self, events: Sequence[InboundEvent], now_ms: int) -> list[Ingested]:
        """Deduplicate, resolve identity → customer → active conversation, append to the log.

        Identity: an address (`sender`) names at most one customer; an event with a
        `customer_id` links a new address to that customer. Email: a Message-ID seen before is
        a duplicate; In-Reply-To/References of a known message thread into that message's
        conversation while it is open. A customer has at most one open conversation.
        """

    async def apply_many(
        self, entries: Sequence[LogEntry], now_ms: int, history_limit: int
    ) -> list[Applied | StoreError]:
        """`apply_inbound_view` for each entry, in order (one round trip on Redis); an entry
        the store refuses gives its StoreError in its place, the others are applied."""
        steps = (self.apply_inbound_view(entry, now_ms, history_limit) for entry in entries)
        return await in_place(steps, StoreError)

    @abstractmethod
    async def read_log(self, consumer: str, count: int, block_ms: int) -> list[LogEntry]:
        """Entries for this consumer: first ones reclaimed from dead consumers, then new ones."""

    @abstractmethod
    async def backlog(self) -> Backlog:
        """How many accepted log entries no consumer has read yet, how long the oldest of them
        has waited, and how many the consumers have read in all (a counter: its rate is how
        fast routing goes). Entries a consumer holds are not unread: those of a dead node are
        taken over, not waited for."""

    @abstractmethod
    async def ack_log(self, entry_ids: Sequence[str]) -> None:
        """Mark entries processed; they are never handed out again."""

    @abstractmethod
    def reread(self, consumer: str) -> None:
        """Make the consumer's next `read_log` hand out the entries it still holds first (its
        batch failed or was fenced: they are retried at once, not after `claim_idle_ms`)."""

    # -- nodes: leases, takeover, desktops ------------------------------------------------------

    @abstractmethod
    async def beat(self, node: str, token: str, ttl_ms: int, first: bool = False) -> Beat:
        """Renew this node's lease for `ttl_ms` (`token` is this process's own), then take over
        every node whose lease lapsed: its unacknowledged log entries and jobs become this
        node's, its desktops are forgotten. `first`: the process's first beat (no lease to
        have lost)."""

    @abstractmethod
    async def desktop(self, agent: str, node: str, change: int, count: int | None = None) -> int:
        """Count the agent's desktops on `node` (+1 connected, -1 closed, 0 to ask; `count`
        sets it); returns on how many other live nodes the agent has a desktop."""

    # -- customers, conversations, history -----------------------------------------------------

    @abstractmethod
    async def apply_inbound(
        self, entry: LogEntry, now_ms: int
    ) -> tuple[Conversation, Customer, Interaction | None]:
        """Append the event's interaction to the customer's history (once per event id), merge
        its profile fields, count `messages_in` for messages, add its channel to the
        conversation. Returns the conversation and customer after the change, and the
        interaction appended — for an event applied before (a reclaimed log entry), the one
        appended the first time, so nothing is ever appended twice."""

    async def apply_inbound_view(self, entry: LogEntry, now_ms: int, history_limit: int) -> Applied:
        """`apply_inbound`, plus the customer's last `history_limit` interactions after it
        (one round trip on Redis: what an offer made right away needs)."""
        conv, customer, interaction = await self.apply_inbound(entry, now_ms)
        return conv, customer, interaction, await self.history(customer.id, history_limit)

    async def view(
        self, conversation_id: str, history_limit: int
    ) -> tuple[Conversation | None, Customer | None, list[Interaction]]:
        """A conversation, its customer and their last interactions (one round trip on Redis)."""
        conv = await self.conversation(conversation_id)
        if conv is None:
            return None, None, []
        customer = await self.customer(conv.customer)
        return conv, customer, await self.history(conv.customer, history_limit)

    @abstractmethod
    async def conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None."""

    @abstractmethod
    async def history(self, customer_id: str, limit: int) -> list[Interaction]:
        """The customer's last `limit` interactions over every conversation, oldest first."""

    @abstractmethod
    async def customer(self, customer_id: str) -> Customer | None:
        """The customer, or None."""

    @abstractmethod
    async def update_customer(
        self, customer_id: str, version: int, fields: Mapping[str, str]
    ) -> Customer:
        """Apply agent edits (EDITABLE_FIELDS) if `version` is current; bump the version."""

    @abstractmethod
    async def set_group(self, customer_id: str, group: str) -> Customer:
        """Set the client group (normal, SIC, CSC); bumps the version."""

    @abstractmethod
    async def add_outbound(self, reply: Reply, send: bool = False) -> Interaction:
        """Store an agent's reply in history and count `messages_out`; with `send`, in the same
        atomic step, the job that sends it (`read_jobs`): a reply the agent was told about is
        sent by whichever node is alive."""

    # -- outgoing jobs: replies to send, PBX commands -------------------------------------------

    @abstractmethod
    async def add_job(self, fields: Mapping[str, Any]) -> str:
        """Queue one job (a map of strings, numbers, lists); returns its id."""

    @abstractmethod
    async def read_jobs(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        """Jobs for this consumer: its own unfinished ones and those taken over from dead
        nodes first (see `beat`), then new ones; like `read_log`, each job goes to one node."""

    @abstractmethod
    async def ack_jobs(self, job_ids: Sequence[str]) -> None:
        """Mark jobs done; they are never handed out again."""

    @abstractmethod
    async def link(self, customer_id: str, addresses: Sequence[str]) -> None:
        """Link addresses to an existing customer (a site vouches for them), moving each off
        any other customer; raises UnknownCustomer when the customer does not exist."""

    @abstractmethod
    async def annotate(
        self, customer_id: str, interaction_id: str, meta: Mapping[str, Any]
    ) -> bool:
        """Merge `meta` into one of the customer's last `ANNOTATE_WINDOW` interactions (delivery
        statuses, talk time, sent Message-IDs); False when it is not among them."""

    @abstractmethod
    async def set_state(self, conversation_id: str, state: str, agent: str | None) -> None:
        """Move the conversation along its lifecycle; `closed` frees the customer for a new one
        and remembers `agent` as the customer's last agent."""

    # -- per-agent outboxes --------------------------------------------------------------------

    async def push(
        self,
        frames: Sequence[tuple[str, Mapping[str, Any]]],
        states: Sequence[tuple[str, str, str | None]] = (),
        ack: Sequence[str] = (),
        to_holder: Sequence[tuple[str, Mapping[str, Any]]] = (),
        consumer: str | None = None,
    ) -> list[int]:
        """Append frames (agent, frame without seq) to their agents' outboxes; return the seqs
        given, and wake every listener of those agents (on any node) with the frames.

        `states` — (conversation, state, agent) changes these frames announce — are applied
        first, in the same atomic step (one round trip on Redis); a change to a closed or
        unknown conversation is skipped, so a late effect never reopens one. `ack` — log
        entries these frames finish — are acknowledged in that same step (`ack_log`); with
        `consumer`, only if that consumer still holds every one of them, else `Fenced`.

        `to_holder` — (conversation, frame) — go to the conversation's holder as the store
        knows it at this step: at once when it is offered, assigned or in wrap-up; while it is
        queued they wait, and the push that records it offered or assigned delivers them after
        its own frames (its offer is being made elsewhere: a message that raced it reaches the
        agent right after the offer); once it is closed they are dropped (history has them).
        Returns the seqs of `frames` only."""
        for _conversation, state, _agent in states:
            check_state(state)
        if not frames and not states and not ack and not to_holder:
            return []
        return await self._push(Push(frames, states, ack, to_holder, consumer))

    @abstractmethod
    async def _push(self, batch: Push) -> list[int]:
        """Store one `push` whose states are valid and that has something to do: one atomic
        step (see `push`)."""

    @abstractmethod
    async def since(self, agent: str, seq: int) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        """Frames after `seq`, oldest first, and whether nothing after `seq` was trimmed."""

    async def client_group(self, customer_id: str) -> str | None:
        """The customer's client group now (None: no such customer) — the send-time tier
        filter asks it for every frame with customer content, so backends answer from memory
        where they can (Redis: a cache kept true by the group changes every node hears)."""
        customer = await self.customer(customer_id)
        return customer.client_group if customer is not None else None

    @abstractmethod
    async def head(self, agent: str) -> int:
        """The last seq given to the agent (0 when none)."""

    @abstractmethod
    async def listen(self, agent: str, wake: Wake) -> None:
        """Call `wake(agent, seq)` whenever frames are pushed for the agent (any node)."""

    @abstractmethod
    async def unlisten(self, agent: str, wake: Wake) -> None:
        """Stop calling `wake` for the agent."""
