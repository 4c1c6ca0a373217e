"""SMS over Twilio's wire format. See DESIGN.md, "Channel endpoints → SMS".

Five modules, one concept each, importing one way (`signature` uses nothing here; `inbound`,
`status` and `outbound` use `form`, never each other; none of them imports `router`, whose
`router.channel_sms` serves the webhooks and owns the HTTP client):

- `form`: one webhook's form — the urlencoded body as pairs, the `SmsRefused` every reader
  raises, the field shapes they share, and the empty TwiML answer.
- `signature`: Twilio's `X-Twilio-Signature` over the URL and the form. Standard library only.
- `inbound`: an inbound message webhook into an `InboundSms` (its sender in E.164) and the
  `/v1/events` event it becomes.
- `status`: delivery status callbacks — their order (`STATUS_RANK`), reading one, and the
  customer and interaction its URL names.
- `outbound`: `SmsPort`, replies through Twilio's Messages API over a `Transport` it is given,
  retried on `channels.retry` with `SMS_BACKOFF`.

This package has no code of its own: import from the module that holds a name.
"""
