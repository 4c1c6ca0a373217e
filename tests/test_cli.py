"""The `omniroute` command, run as a real process: check-config, token and serve."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer

import queues
from router.app import create_app
from router.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
SECRET = "test-signing-secret-of-at-least-32-bytes"
START_DEADLINE_S = 15.0
STOP_DEADLINE_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any OMNIROUTE_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
    env.update(extra or {})
    return env


def omniroute(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", *args],
        cwd=REPO,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr


# -- check-config --------------------------------------------------------------------------------


def test_check_config_accepts_the_shipped_file() -> None:
    result = omniroute("check-config", "config/omniroute.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: config/omniroute.toml\n")
    assert "engine: memory (embedded, nothing persisted)" in result.stdout
    assert "domain: default" in result.stdout
    assert "reservation timeout: 20 s" in result.stdout


def test_check_config_applies_the_environment_and_hides_passwords(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[routing]\ndomain = "berlin"\n[reservation]\ntimeout_s = 15\n')
    env = {"OMNIROUTE_REDIS_URL": "redis://:hunter2@127.0.0.1:6390/0", "OMNIROUTE_JWT_SECRET": "x"}
    result = omniroute("check-config", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert "domain: berlin" in result.stdout
    assert "reservation timeout: 15 s" in result.stdout
    assert "engine: redis redis://:***@127.0.0.1:6390/0" in result.stdout
    assert "jwt set" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[reservation]\ntimeout_s = "abc"\n', "[reservation] timeout_s: must be a number > 0"),
        ("[levels.CSC]\nPAM = 5\n", "[levels.CSC] PAM: tier PAM is not eligible"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_check_config_refuses_a_bad_file_in_one_line(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert_one_line_error(omniroute("check-config", str(path)), needle)


def test_check_config_names_a_bad_environment_variable() -> None:
    env = {"OMNIROUTE_RESERVATION_TIMEOUT_S": "soon"}
    result = omniroute("check-config", "config/omniroute.toml", env=env)
    assert_one_line_error(result, "OMNIROUTE_RESERVATION_TIMEOUT_S: must be a number > 0")


def test_check_config_of_a_missing_file(tmp_path: Path) -> None:
    result = omniroute("check-config", str(tmp_path / "nope.toml"))
    assert_one_line_error(result, "nope.toml: cannot read the file")


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("launch",),
        ("token", "--agent", "a1", "--tier", "BOSS"),
        ("token", "--tier", "PAM"),
        ("token", "--agent", "a1", "--tier", "PAM", "--ttl", "-5"),
        ("serve", "--port", "http"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    assert_one_line_error(omniroute(*args, env={"OMNIROUTE_JWT_SECRET": SECRET}))


@pytest.mark.skipif(shutil.which("omniroute") is None, reason="package not installed")
def test_the_console_script_is_installed() -> None:
    result = subprocess.run(
        ["omniroute", "check-config", str(REPO / "config" / "omniroute.toml")],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


# -- token ---------------------------------------------------------------------------------------


def decode(token: str, secret: str = SECRET) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"])
    return claims


def test_token_carries_the_claims() -> None:
    before = int(time.time())
    result = omniroute(
        *("token", "--agent", "a-17", "--tier", "PAM", "--name", "Anna", "--role", "supervisor"),
        *("--skills", "de, en", "--endpoint", "sip:17@pbx", "--ttl", "600"),
        env={"OMNIROUTE_JWT_SECRET": SECRET},
    )
    assert result.returncode == 0, result.stderr
    claims = decode(result.stdout.strip())
    assert claims["sub"] == "a-17"
    assert claims["tier"] == "PAM"
    assert claims["name"] == "Anna"
    assert claims["role"] == "supervisor"
    assert claims["skills"] == ["de", "en"]
    assert claims["endpoint"] == "sip:17@pbx"
    assert before + 600 <= claims["exp"] <= int(time.time()) + 600


def test_token_defaults_to_an_agent_for_eight_hours() -> None:
    result = omniroute(
        "token", "--agent", "a1", "--tier", "TRN", env={"OMNIROUTE_JWT_SECRET": SECRET}
    )
    assert result.returncode == 0, result.stderr
    claims = decode(result.stdout.strip())
    assert {k: claims[k] for k in ("sub", "tier", "name", "role")} == {
        "sub": "a1",
        "tier": "TRN",
        "name": "a1",
        "role": "agent",
    }
    assert "skills" not in claims and "endpoint" not in claims
    assert abs(claims["exp"] - time.time() - 8 * 3600) < 60


def test_token_reads_the_secret_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.toml"
    path.write_text(f'[jwt]\nsecret = "{SECRET}-from-file"\n')
    result = omniroute(
        "token", "--agent", "ops1", "--tier", "SAM", "--role", "ops", "--config", str(path)
    )
    assert result.returncode == 0, result.stderr
    assert decode(result.stdout.strip(), f"{SECRET}-from-file")["role"] == "ops"


def test_token_without_a_secret_is_a_one_line_error() -> None:
    result = omniroute("token", "--agent", "a1", "--tier", "CCS")
    assert_one_line_error(result, "OMNIROUTE_JWT_SECRET")
    assert result.stdout == ""


# -- serve ---------------------------------------------------------------------------------------


def get(url: str) -> tuple[int, Any]:
    """(status, JSON body or None) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, None


class Server:
    """A running `omniroute serve`: its base URL, and its log once it has stopped."""

    def __init__(self, base: str, stderr: IO[str]) -> None:
        self.base = base
        self.stderr = stderr
        self.first_line: dict[str, Any] = {}
        self.log = ""  # everything it wrote to stderr, filled in when it has stopped


@contextmanager
def running_server(*args: str, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """`omniroute serve` on a free loopback port, yielded once /healthz answers 200.

    On the way out: SIGTERM, and the process must exit 0 within STOP_DEADLINE_S; whatever
    happens, it is killed rather than left running.
    """
    port = free_port()
    command = [sys.executable, "-m", "router.cli", "serve", "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), *args],
        cwd=REPO,
        env=clean_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    server = Server(f"http://127.0.0.1:{port}", proc.stderr)
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            assert proc.poll() is None, f"serve exited early: {proc.stderr.read()}"
            try:
                if get(f"{server.base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /healthz in time"
            time.sleep(0.1)
        first = proc.stderr.readline()
        server.first_line = json.loads(first)
        yield server
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_DEADLINE_S) == 0
        server.log = first + proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_DEADLINE_S)
        proc.stderr.close()


def test_serve_starts_answers_health_and_stops_on_sigterm() -> None:
    env = {"OMNIROUTE_JWT_SECRET": SECRET, "OMNIROUTE_WEBHOOK_SECRET": SECRET + "-webhook"}
    with running_server(env=env) as server:
        assert get(f"{server.base}/healthz") == (200, {"status": "ok"})
        assert get(f"{server.base}/readyz") == (200, {"status": "ready", "engine": "memory"})
        assert get(f"{server.base}/v1/queues")[0] == 401  # ops views need an ops token
        assert server.first_line["event"] == "omniroute.serve"
        assert server.first_line["engine"] == "memory (embedded, nothing persisted)"
        assert server.first_line["listen"] == server.base
    lines = [json.loads(line) for line in server.log.splitlines()]
    assert lines[-1]["event"] == "omniroute.stopped"
    assert SECRET not in server.log


def test_serve_logs_redis_without_password_and_is_not_ready_without_redis() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nobody listens there
    with running_server("--redis", url) as server:
        assert get(f"{server.base}/healthz") == (200, {"status": "ok"})
        assert get(f"{server.base}/readyz") == (503, {"status": "unavailable", "engine": "redis"})
        assert server.first_line["engine"].startswith("redis redis://:***@127.0.0.1:")
    assert "hunter2" not in server.log


def test_serve_is_ready_with_a_real_redis(redis_url: str) -> None:
    with running_server(env={"OMNIROUTE_REDIS_URL": redis_url}) as server:
        assert get(f"{server.base}/readyz") == (200, {"status": "ready", "engine": "redis"})
        assert server.first_line["engine"] == f"redis {redis_url}"


def test_serve_with_a_bad_setting_exits_2_in_one_line() -> None:
    result = omniroute("serve", env={"OMNIROUTE_RESERVATION_TIMEOUT_S": "abc"})
    assert_one_line_error(result, "OMNIROUTE_RESERVATION_TIMEOUT_S")


async def test_the_app_ticks_the_engine() -> None:
    """Presence expiry only happens on a tick: the app's background task must be running it."""
    settings = load_settings(None, {"OMNIROUTE_PRESENCE_TTL_S": "0.2"})
    engine = queues.create_engine(settings.policy, settings.redis.url, domain=settings.domain)
    async with TestClient(TestServer(create_app(settings, engine))) as client:
        response = await client.get("/healthz")
        assert response.status == 200
        await engine.login("a1", "CCS")
        await engine.set_presence("a1", "available")
        deadline = time.monotonic() + 5
        while (await engine.agent_view("a1") or {}).get("state") != "offline":
            assert time.monotonic() < deadline, "no tick expired the agent's presence"
            await asyncio.sleep(0.05)


def test_serve_workers_refuses_the_memory_engine_in_one_line() -> None:
    result = omniroute("serve", "--workers", "2")
    assert_one_line_error(result, "--workers")


def listening_pids(port: int) -> set[int]:
    """The processes with a socket listening on 127.0.0.1:`port` (from /proc, Linux)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                pids.add(int(fd_dir.parent.name))
        except OSError:
            continue
    return pids


def test_serve_workers_runs_processes_on_one_port_and_stops_them_all(redis_url: str) -> None:
    env = {"OMNIROUTE_REDIS_URL": redis_url, "OMNIROUTE_SERVER_NODE": "box"}
    with running_server("--workers", "2", env=env) as server:
        assert server.first_line["event"] == "omniroute.serve"
        assert server.first_line["workers"] == 2
        port = int(server.base.rsplit(":", 1)[1])
        deadline = time.monotonic() + START_DEADLINE_S
        while len(pids := listening_pids(port)) < 2:  # both workers hold the port
            assert time.monotonic() < deadline, f"workers listening: {pids}"
            time.sleep(0.1)
        for _ in range(10):  # every answer is some worker's
            assert get(f"{server.base}/readyz")[0] == 200
    lines = [json.loads(line) for line in server.log.splitlines()]
    started = [line for line in lines if line["event"] == "omniroute.serve" and "pid" in line]
    assert sorted(line["worker"] for line in started) == [0, 1]
    assert {line["pid"] for line in started} == pids
    for pid in pids:  # the supervisor exited 0 only after its workers had stopped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert lines[-1] == {**lines[-1], "event": "omniroute.stopped", "workers": 2}
