"""The recording replay runs on: what the engines kept, read from Redis, an engine or a file.

It is two things the engines record anyway (`queues.trace`): every task's routing decisions
(its arrival, offers, accepts, rejects, time-outs, completion, wrap-up end or abandonment —
ids and times) and the agents' actions (logins with tier and capacity, presence, logouts).
Nothing of a customer but the ids and the values of the fields the priority rules read.

The file (`omniroute export`) is JSON lines: a header
`{"format": "omniroute.recording/1", "domain", "exported_ms", "policy": {…}}` with the policy
that was in force, then one `{"action": row}` per agent action and one
`{"task": "<id>@<enq_ms>", "rows": [row…]}` per task.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import redis.asyncio as aioredis

from queues.memory import MemoryEngine
from queues.policy import Policy, PriorityRule
from queues.trace import Row, normalised

FORMAT = "omniroute.recording/1"
SCAN_BATCH = 500
ACTION_ORDER = {"login": 0, "presence": 1, "logout": 2, "expired": 2}


class RecordingError(Exception):
    """Raised when a recording cannot be read (a missing file, another format, bad rows)."""


@dataclass
class Recording:
    """Agent actions and task traces (`queues.trace` rows), and the policy in force."""

    policy: Policy
    actions: list[Row] = field(default_factory=list)
    traces: dict[str, list[Row]] = field(default_factory=dict)
    domain: str = "default"
    exported_ms: int = 0


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    out = dataclasses.asdict(policy)
    out["priority_rules"] = [dataclasses.asdict(r) for r in policy.priority_rules]
    return out


def policy_from_dict(data: Mapping[str, Any]) -> Policy:
    known = {f.name for f in dataclasses.fields(Policy)}
    values = {k: v for k, v in data.items() if k in known}
    values["eligibility"] = {g: tuple(t) for g, t in values.get("eligibility", {}).items()}
    values["voice_blocks"] = tuple(values.get("voice_blocks", ()))
    values["priority_rules"] = tuple(PriorityRule(**r) for r in values.get("priority_rules", []))
    return Policy(**values)


def lines(recording: Recording) -> Iterator[str]:
    """`recording` as JSON lines (module docstring), tasks in order of arrival."""
    header = {
        "format": FORMAT,
        "domain": recording.domain,
        "exported_ms": recording.exported_ms,
        "policy": policy_to_dict(recording.policy),
    }
    yield json.dumps(header, separators=(",", ":")) + "\n"
    for row in recording.actions:
        yield json.dumps({"action": row}, separators=(",", ":")) + "\n"
    for name, rows in sorted(recording.traces.items(), key=lambda kv: (_enq(kv[0]), kv[0])):
        yield json.dumps({"task": name, "rows": rows}, separators=(",", ":")) + "\n"


def write(recording: Recording, path: str | Path) -> None:
    """Write `recording` to a file as JSON lines."""
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(lines(recording))


def read(path: str | Path) -> Recording:
    """Read a file `write` made; RecordingError when it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror or exc}") from None
    return parse(text, str(path))


def parse(text: str, source: str) -> Recording:
    """A recording from the text of its JSON lines; RecordingError when it is not one."""
    texts = text.splitlines()
    path = source
    try:
        header = json.loads(texts[0]) if texts else {}
        if header.get("format") != FORMAT:
            raise RecordingError(f"{path}: not an omniroute recording ({FORMAT})")
        rec = Recording(
            policy_from_dict(header["policy"]),
            domain=str(header.get("domain", "default")),
            exported_ms=int(header.get("exported_ms", 0)),
        )
        for number, line in enumerate(texts[1:], start=2):
            item = json.loads(line)
            if "action" in item:
                rec.actions.append(list(item["action"]))
            elif "task" in item:  # written from normalised rows (write): taken as they are
                rec.traces[str(item["task"])] = item["rows"]
            else:
                raise RecordingError(f"{path}:{number}: neither an action nor a task")
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordingError(f"{path}: {exc}") from None
    return rec


def _enq(name: str) -> int:
    try:
        return int(name.rsplit("@", 1)[1])
    except (IndexError, ValueError):
        return 0


async def from_engine(engine: MemoryEngine, exported_ms: int) -> Recording:
    """What a memory engine kept (it lives in the serving process)."""
    raw = await engine._read("recording", exported_ms, {})
    traces = {k: normalised(v) for k, v in raw["traces"].items()}
    return Recording(engine.policy, list(raw["actions"]), traces, engine.domain, exported_ms)


async def from_redis(url: str, domain: str, policy: Policy, exported_ms: int) -> Recording:
    """What the Redis engine of `domain` kept: the action set, every `why:` hash (finished
    tasks; SCAN, never KEYS) and the records of the tasks still open."""
    client: aioredis.Redis[bytes] = aioredis.Redis.from_url(url, decode_responses=False)
    prefix = f"omniroute:{{{domain}}}:"
    rec = Recording(policy, domain=domain, exported_ms=exported_ms)
    try:
        for raw in await client.zrange(prefix + "act", 0, -1):
            rec.actions.append(list(msgpack.unpackb(raw, raw=False)))
        pattern = _glob(prefix) + "why:*"
        async for name in client.scan_iter(match=pattern, count=SCAN_BATCH):
            for task, stream in (await client.hgetall(name)).items():
                rec.traces[task.decode()] = normalised(_rows(stream))
        for task_id in sorted(await client.smembers(prefix + "tasks")):
            blob = await client.get(prefix + "task:" + task_id.decode())
            if blob:
                # the trace inside is a binary msgpack stream held as a string: keep its bytes
                record = msgpack.unpackb(blob, raw=False, unicode_errors="surrogateescape")
                tr = record.get("tr") or b""
                if isinstance(tr, str):
                    tr = tr.encode("utf-8", "surrogateescape")
                rows = normalised(_rows(tr))
                rec.traces[f"{record['id']}@{record['enq']}"] = rows
    finally:
        await client.aclose()  # type: ignore[attr-defined]  # stubs predate aclose
    # one millisecond may hold several actions of an agent: a login comes before the rest
    rec.actions.sort(key=lambda row: (row[0], ACTION_ORDER.get(str(row[1]), 9), str(row[2])))
    return rec


def _rows(stream: bytes) -> list[Row]:
    """A trace as Redis keeps it: rows, one msgpack value after the other (lib_trace.lua note())."""
    return [list(row) for row in msgpack.Unpacker(io.BytesIO(stream), raw=False)]


def _glob(text: str) -> str:
    return "".join("\\" + ch if ch in "\\*?[]" else ch for ch in text)
