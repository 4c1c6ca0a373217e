"""Channel adapters (chat, SMS, email, telephony): native traffic in, replies out.

One module per channel, one concept per module. They import no other omniroute package and
no aiohttp (tests/test_layout.py): `router` serves the endpoints, owns every HTTP client and
wires each channel into the app (`router/channel_*.py`):

- `base`: the adapter interface (`OutboundMessage`, `OutboundPort`, `ChannelPorts`) and the
  webhook signature.
- `chat`, `voice`: the website widget, the PBX.
- `sms/`: a package for Twilio — `form` (reading a webhook), `signature`, `inbound` (a
  message into an event), `status` (delivery statuses), `outbound` (replies).
- `email/`: a package, email being three concepts — `parse` (reading a message), `inbound`
  (the SMTP listener), `outbound` (replies through the relay).
- `retry`: bounded retries with backoff, behind every send (SMS and email replies, the PBX
  `connect`), each with its own schedule.
"""
