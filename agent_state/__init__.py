"""Agent state: presence, capacity per channel and what an agent is shown as."""
