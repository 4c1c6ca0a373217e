"""Email: an SMTP listener in, an SMTP relay out. See DESIGN.md, "Channel endpoints → Email".

Three modules, one concept each, importing one way (`inbound` and `outbound` use `parse`, never
each other, and none of them imports `router` or another omniroute package):

- `parse`: reading one message — MIME bytes into a `Parsed` (text body, attachments as
  metadata), and header values (addresses, Message-IDs). Standard library only.
- `inbound`: SMTP in — `SmtpListener` and `SmtpHandler` take mail for the support addresses
  and hand each one, as a `Mail`, to a `deliver` callback (`router.channel_email`).
- `outbound`: mail out — `EmailPort` sends agents' replies through the relay, threaded onto
  the customer's mail.

This package has no code of its own: import from the module that holds a name.
"""
