"""The omniroute server: the aiohttp app, the edge it serves, and the core behind the edge.

- the core, no sockets: `service` (events in, decisions, frames out), `inbound` (log entries →
  conversations and queues), `delivery` (an outbox to a socket), `replies` (outgoing jobs),
  `frames`, `admission`, `liveness`, `identity`, `errors`, `clock`, `ops_views` (what ops see:
  the view rows and the stream's one producer).
- the edge, the only modules that import aiohttp: `app` (routes, startup, cleanup), `ingest`
  (`POST /v1/events`), `agent_ws` and `agent_session` (the desktop socket), `channel_*` (each
  channel's endpoints; `chat_session`, one chat widget socket), `ops`, `why`, `recording`,
  `body`, `connections`, and `web/` (pages).
- the wire's shapes and checks: `protocol` (events), `agent_fields` (desktop frames),
  `agent_commands` (desktop frame type → handler → Service), `codec` (JSON and msgpack),
  `auth` (tokens, signatures), `limits` (socket bounds, rate limits).
- the command and its settings: `cli`, `cli_replay`, `workers`, `desktop`, `settings*`, `logs`,
  `metrics`.

May import `channels`, `queues`, `store`, `agent_state`, `replay` and the shipped `config`;
none of them imports `router`, and it never imports `bench` or `chaos` (tests/test_layout.py).
See docs/architecture.md for the packages and the path of one event.
"""
