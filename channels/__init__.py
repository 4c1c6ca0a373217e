"""Channel adapters (chat, SMS, email, telephony): native traffic in, replies out.

One module per channel, one concept per module; none of them imports `router`, which serves
the endpoints and wires each channel into the app (`router/channel_*.py`):

- `base`: the adapter interface (`OutboundMessage`, `OutboundPort`, `ChannelPorts`) and the
  webhook signature.
- `chat`, `sms`, `voice`: the website widget, Twilio, the PBX.
- `email/`: a package, email being three concepts — `parse` (reading a message), `inbound`
  (the SMTP listener), `outbound` (replies through the relay).
- `retry`: bounded retries with backoff, behind every send (SMS and email replies, the PBX
  `connect`), each with its own schedule.
"""
