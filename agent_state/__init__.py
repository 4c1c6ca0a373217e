"""Agent state: presence, capacity per channel and what an agent is shown as.

`agent_state.base` holds the rules, written once in Python (`queues/lua/lib_rules.lua` mirrors them
for the Redis engine); the engines in `queues` store the state and apply them.

Imports no other omniroute package: it is the bottom of the graph (tests/test_layout.py).
"""
