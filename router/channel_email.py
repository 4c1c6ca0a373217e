"""Wires the email channel into the app: the SMTP listener in, `EmailPort` out.

`add_email(app, service, settings)` registers `EmailPort` on `service.outbound` for channel
`email` when `[email] relay_host` is set (else replies stay with the recording port), and, when
`[email] addresses` lists support addresses, runs the SMTP listener on `[email] smtp_host` /
`smtp_port` from startup to cleanup. Each accepted mail becomes one `InboundEvent` through
`service.ingest`; the SMTP 250 waits for it (see `channels.email.inbound`).

The listener stops at shutdown, before any cleanup step closes the store; one that starts
before the store is ready answers 451 (try later) meanwhile, which the sending MTA honours.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from channels.base import ChannelPorts
from channels.email.inbound import Mail, SmtpHandler, SmtpListener
from channels.email.outbound import EmailPort
from router.service import Service
from router.settings import Settings
from store.model import InboundEvent

log = structlog.get_logger("omniroute.email")

EMAIL_LISTENER_KEY = web.AppKey("email_listener", SmtpListener)
EMAIL_PORT_KEY = web.AppKey("email_port", EmailPort)


def mail_event(mail: Mail) -> InboundEvent:
    """The `InboundEvent` of one accepted mail."""
    return InboundEvent(
        id=mail.id,
        type="message",
        channel="email",
        sender=mail.sender,
        subject=mail.subject,
        # the contract wants a body or a subject on every message
        body=mail.body or (None if mail.subject else "(no text)"),
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references=mail.references,
        meta=mail.meta(),
    )


def add_email(app: web.Application, service: Service, settings: Settings) -> None:
    """See the module docstring. Idempotent: a second call on the same app does nothing."""
    if EMAIL_LISTENER_KEY in app or EMAIL_PORT_KEY in app:
        return
    cfg = settings.email
    if cfg.relay_host:
        port = EmailPort(cfg.relay_host, cfg.relay_port, cfg.from_address, service.store.annotate)
        if isinstance(service.outbound, ChannelPorts):
            service.outbound.register("email", port)
            app[EMAIL_PORT_KEY] = port
            app.cleanup_ctx.append(_drain_port)
        else:
            log.warning("email.outbound_unregistered", reason="service has no ChannelPorts")
    else:
        log.info("email.outbound_disabled", reason="no relay_host")
    if not cfg.addresses:
        log.info("email.listener_disabled", reason="no addresses")
        return

    async def deliver(mail: Mail) -> None:
        await service.ingest([mail_event(mail)])

    handler = SmtpHandler(cfg.addresses, deliver, max_bytes=cfg.max_bytes)
    hostname = cfg.from_address.split("@", 1)[1] if "@" in cfg.from_address else "omniroute"
    app[EMAIL_LISTENER_KEY] = SmtpListener(handler, cfg.smtp_host, cfg.smtp_port, hostname=hostname)
    app.cleanup_ctx.append(_run_listener)
    app.on_shutdown.append(_stop_listener)  # before any cleanup: no mail taken while closing


async def _stop_listener(app: web.Application) -> None:
    await app[EMAIL_LISTENER_KEY].stop()


async def _run_listener(app: web.Application) -> AsyncIterator[None]:
    listener = app[EMAIL_LISTENER_KEY]
    await listener.start()
    try:
        yield
    finally:
        await listener.stop()


async def _drain_port(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[EMAIL_PORT_KEY].close()
