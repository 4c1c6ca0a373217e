"""The adapter interface: inbound normalisation and an outbound port per channel.

The router never knows a channel's wire format. Inbound, an adapter turns native traffic
(a Twilio webhook, an SMTP message, a PBX event) into `store.model.InboundEvent`s; outbound,
the router hands an `OutboundMessage` to the channel's `OutboundPort`.

Until the native adapters exist, `RecordingPort` is the port of every channel: it records
what would be sent (ids and sizes in the log, the message itself in memory) and sends nothing.

`MAX_ID` is the contract's bound on ids, as the adapters check what they receive before the
router does. Its home is the routing engine's `queues.args.MAX_ID`; `channels` imports nothing
of this repository (an adapter runs and is tested on its own, and the engine's contract would
come with it for one number), so it is written here a second time and
`tests/test_layout.py` fails if the two ever differ.
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

log = structlog.get_logger("omniroute.channels")

SIGNATURE_HEADER = "X-Omniroute-Signature"
MAX_ID: Final = 200  # event, customer and interaction ids: as queues.args.MAX_ID (see above)


def sign(body: bytes, secret: str) -> str:
    """The signature header value for a body: `sha256=<hex HMAC-SHA256>` (webhooks both ways)."""
    return "sha256=" + hmac.digest(secret.encode(), body, "sha256").hex()  # one-shot, in C


@dataclass(frozen=True)
class OutboundMessage:
    """An agent's reply on its way to the customer's channel."""

    conversation: str
    customer: str
    channel: str
    body: str
    interaction: str
    agent: str
    # every address linked to the customer (E.164 numbers, emails, visitor:… ids)
    addresses: tuple[str, ...] = ()
    # the meta of the customer's last inbound interaction on this channel (Message-ID, …)
    reply_meta: Mapping[str, Any] = field(default_factory=dict)
    site: str | None = None


class ChannelRefused(Exception):
    """Raised by a port when it cannot carry this reply at all (no address for the customer,
    channel not configured); the agent hears it as an `error` with `code`."""

    def __init__(self, message: str, code: str = "conflict") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Delivered:
    """What became of one reply on its channel: `sent` (the provider took it) or `failed`
    with a reason (a provider code, `unreachable`, `no_number`, …)."""

    status: str
    error: str | None = None


class OutboundPort(ABC):
    """Carries agent replies out on one or more channels."""

    @abstractmethod
    async def send(self, message: OutboundMessage) -> None:
        """Hand the message to the channel; raise on a refusal the agent should hear about."""

    def check(self, message: OutboundMessage) -> None:  # noqa: B027 - most ports take anything
        """Raise `ChannelRefused` when this reply cannot be carried at all (checked before it
        is stored, so the agent's `error` leaves nothing behind)."""

    async def deliver(self, message: OutboundMessage) -> Delivered:
        """Send the message now, retries included, and say what became of it (the durable
        job loop, `router.replies`, awaits this). Ports without their own do `send`."""
        await self.send(message)
        return Delivered("sent")


class RecordingPort(OutboundPort):
    """Records what would be sent; sends nothing. The default until adapters are configured."""

    def __init__(self, keep: int = 1000) -> None:
        self.keep = keep
        self.sent: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> None:
        self.sent.append(message)
        del self.sent[: -self.keep]
        log.info(
            "outbound.recorded",
            channel=message.channel,
            conversation=message.conversation,
            interaction=message.interaction,
            size=len(message.body.encode()),
        )


class ChannelPorts(OutboundPort):
    """The router's one outbound port: hands each message to its channel's registered port.

    Adapters register themselves (`register("sms", SmsPort(...))`); a channel with no adapter
    falls back to `default` (a `RecordingPort` unless given), so nothing fails silently.
    """

    def __init__(self, default: OutboundPort | None = None) -> None:
        self.default = default or RecordingPort()
        self.ports: dict[str, OutboundPort] = {}

    def register(self, channel: str, port: OutboundPort) -> None:
        self.ports[channel] = port

    def _port(self, message: OutboundMessage) -> OutboundPort:
        return self.ports.get(message.channel, self.default)

    async def send(self, message: OutboundMessage) -> None:
        await self._port(message).send(message)

    def check(self, message: OutboundMessage) -> None:
        self._port(message).check(message)

    async def deliver(self, message: OutboundMessage) -> Delivered:
        return await self._port(message).deliver(message)
