"""The omniroute server: aiohttp app, ingest, engine loop, WebSocket sessions, ops."""
