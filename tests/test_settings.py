"""router.settings: shipped defaults, file and environment layers, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from queues.policy import Policy, PriorityRule
from router.settings import Override, describe_engine, load_settings, redact_url
from router.settings_keys import SettingsError, env_name


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "omniroute.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_of(path: str | None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(path, env or {})
    return str(caught.value)


# -- defaults ------------------------------------------------------------------------------------


def test_shipped_defaults_equal_the_policy_defaults() -> None:
    settings = load_settings(None, {})
    assert settings.policy == Policy()
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.server.public_url == ""
    assert settings.redis.url == ""
    assert settings.redis.engine == "memory"
    assert settings.domain == "default"
    assert settings.jwt_secret == ""
    assert settings.webhook_secret == ""
    assert settings.email.max_bytes == 10 * 1024 * 1024
    assert settings.email.addresses == ()
    assert settings.sms.api_base_url == "https://api.twilio.com"
    assert settings.voice.pbx_url == ""
    assert settings.source is None


def test_every_setting_has_an_environment_name() -> None:
    assert env_name("reservation", "timeout_s") == "OMNIROUTE_RESERVATION_TIMEOUT_S"
    assert env_name("levels.normal", "PAM") == "OMNIROUTE_LEVELS_NORMAL_PAM"
    assert env_name("service_level", "threshold_s") == "OMNIROUTE_SERVICE_LEVEL_THRESHOLD_S"
    assert env_name("jwt", "secret") == "OMNIROUTE_JWT_SECRET"
    assert env_name("webhook", "secret") == "OMNIROUTE_WEBHOOK_SECRET"
    with pytest.raises(KeyError):
        env_name("reservation", "timeout")


# -- layers --------------------------------------------------------------------------------------


def test_a_partial_user_file_overrides_only_its_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [reservation]
        timeout_s = 45
        [capacity]
        chat = 2
        voice_blocks = []
        [levels.normal]
        PAM = 30.5
        [email]
        addresses = ["support@example.org", "help@example.org"]
        """,
    )
    settings = load_settings(path, {})
    policy = settings.policy
    assert policy.reservation_timeout_s == 45.0
    assert policy.capacity == {"chat": 2, "sms": 3, "email": 5, "voice": 1}
    assert policy.voice_blocks == ()
    assert policy.levels["normal"] == {"TRN": 0.0, "CCS": 0.0, "PAM": 30.5, "SAM": 120.0}
    assert policy.wrapup_s == Policy().wrapup_s
    assert settings.email.addresses == ("support@example.org", "help@example.org")
    assert settings.source == path


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[reservation]\ntimeout_s = 45\n[server]\nport = 9000\n")
    env = {"OMNIROUTE_RESERVATION_TIMEOUT_S": "12.5", "OMNIROUTE_LEVELS_NORMAL_SAM": "300"}
    settings = load_settings(path, env)
    assert settings.policy.reservation_timeout_s == 12.5
    assert settings.policy.levels["normal"]["SAM"] == 300.0
    assert settings.server.port == 9000


def test_command_line_overrides_win_over_the_environment() -> None:
    env = {"OMNIROUTE_SERVER_PORT": "9000", "OMNIROUTE_REDIS_URL": "redis://127.0.0.1:6379/0"}
    flags = [Override("--port", "server", "port", "9100"), Override("--redis", "redis", "url", "")]
    settings = load_settings(None, env, overrides=flags)
    assert settings.server.port == 9100
    assert settings.redis.engine == "memory"


def test_environment_lists_are_comma_separated() -> None:
    env = {
        "OMNIROUTE_CAPACITY_VOICE_BLOCKS": "chat, sms",
        "OMNIROUTE_EMAIL_ADDRESSES": "a@example.org,b@example.org",
        "OMNIROUTE_ELIGIBILITY_SIC": "SAM",
    }
    settings = load_settings(None, env)
    assert settings.policy.voice_blocks == ("chat", "sms")
    assert settings.email.addresses == ("a@example.org", "b@example.org")
    assert settings.policy.eligibility["SIC"] == ("SAM",)
    # the shipped level of the tier that is no longer eligible is dropped, not an error
    assert settings.policy.levels["SIC"] == {"SAM": 0.0}
    assert load_settings(None, {"OMNIROUTE_CAPACITY_VOICE_BLOCKS": ""}).policy.voice_blocks == ()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("YES", True),
        ("false", False),
        ("0", False),
        ("no", False),
        (" No ", False),
    ],
)
def test_environment_booleans(text: str, value: bool) -> None:
    settings = load_settings(None, {"OMNIROUTE_ROUTING_OPEN_EMPTY_LEVELS": text})
    assert settings.policy.open_empty_levels is value


def test_unrelated_and_env_only_variables_are_accepted() -> None:
    env = {
        "PATH": "/usr/bin",
        "OMNIROUTE_VISITOR_SECRET": "v" * 32,
        "OMNIROUTE_CONFIG": "/nowhere.toml",
        "OMNIROUTE_TEST_REDIS": "whatever",
    }
    assert load_settings(None, env).policy == Policy()


def test_widening_eligibility_works_with_a_level(tmp_path: Path) -> None:
    path = write(tmp_path, '[eligibility]\nCSC = ["PAM", "SAM"]\n[levels.CSC]\nPAM = 90\n')
    policy = load_settings(path, {}).policy
    assert policy.eligibility["CSC"] == ("PAM", "SAM")
    assert policy.levels["CSC"] == {"PAM": 90.0, "SAM": 0.0}
    assert policy.allowed("CSC", "PAM")


def test_priority_rules_come_from_the_file_and_replace_the_shipped_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[priority.rules]]
        field = "country"
        op = "in"
        value = ["DE", "AT"]
        points = 3

        [[priority.rules]]
        field = "messages_in"
        op = "lt"
        value = 2
        points = -1
        """,
    )
    policy = load_settings(path, {}).policy
    assert policy.priority_rules == (
        PriorityRule("country", "in", ("DE", "AT"), 3),
        PriorityRule("messages_in", "lt", 2, -1),
    )
    assert policy.priority_of({"country": "AT", "messages_in": 0, "top_up": True}) == 2
    no_rules = write(tmp_path, "[priority]\nrules = []\n")
    assert load_settings(no_rules, {}).policy.priority_rules == ()


def test_secrets_stay_out_of_repr() -> None:
    secret = "s3cret-" * 6
    env = {"OMNIROUTE_JWT_SECRET": secret, "OMNIROUTE_WEBHOOK_SECRET": secret}
    env["OMNIROUTE_SMS_AUTH_TOKEN"] = secret
    settings = load_settings(None, env)
    assert settings.jwt_secret == secret
    assert secret not in repr(settings)


def test_redis_urls_are_shown_without_passwords() -> None:
    assert redact_url("redis://:hunter2@db:6379/0") == "redis://:***@db:6379/0"
    assert redact_url("rediss://app:hunter2@db/1") == "rediss://app:***@db/1"
    assert "hunter2" not in redact_url("unix:///run/redis.sock?db=2&password=hunter2")
    assert redact_url("redis://db:6379/0") == "redis://db:6379/0"
    settings = load_settings(None, {"OMNIROUTE_REDIS_URL": "redis://:hunter2@db:6379/0"})
    assert describe_engine(settings) == "redis redis://:***@db:6379/0"
    assert describe_engine(load_settings(None, {})).startswith("memory")


# -- errors: one line, naming the key ------------------------------------------------------------

FILE_ERRORS = [
    (
        '[reservation]\ntimeout_s = "abc"',
        "[reservation] timeout_s: must be a number > 0, got 'abc'",
    ),
    ("[reservation]\ntimeout_s = 0", "[reservation] timeout_s: must be a number > 0"),
    ("[wrapup]\nchat = -5", "[wrapup] chat: must be a number >= 0, got -5"),
    ("[routing]\nlast_agent_s = nan", "[routing] last_agent_s:"),
    ("[capacity]\nchat = 2.5", "[capacity] chat: must be an integer >= 0"),
    ("[capacity]\nchat = -1", "[capacity] chat:"),
    ("[capacity]\nfax = 1", "[capacity] fax: unknown key"),
    ('[capacity]\nvoice_blocks = ["fax"]', "[capacity] voice_blocks:"),
    ('[capacity]\nvoice_blocks = "chat"', "[capacity] voice_blocks:"),
    ("[bogus]\nx = 1", "[bogus]: unknown section"),
    ("port = 8080", "port: unknown top-level key"),
    (
        '[eligibility]\nSIC = ["PAM", "BOSS"]',
        "[eligibility] SIC: must be a non-empty list of tiers",
    ),
    ("[eligibility]\nnormal = []", "[eligibility] normal: must be a non-empty list"),
    ('[eligibility]\nVIP = ["SAM"]', "[eligibility] VIP: unknown client group"),
    ('[eligibility]\nCSC = ["PAM", "SAM"]', "[eligibility] CSC: tier PAM has no level"),
    ("[levels.VIP]\nSAM = 0", "[levels.VIP]: unknown client group"),
    ("[levels.normal]\nBOSS = 0", "[levels.normal] BOSS: unknown tier"),
    ("[levels.CSC]\nPAM = 10", "[levels.CSC] PAM: tier PAM is not eligible for CSC"),
    ("[levels.normal]\nPAM = -1", "[levels.normal] PAM: must be a number >= 0"),
    ("[server]\nport = 70000", "[server] port: must be an integer from 1 to 65535, got 70000"),
    ('[server]\nport = "80"', "[server] port:"),
    ('[server]\npublic_url = "https://acd.example.org/x"', "[server] public_url:"),
    ('[redis]\nurl = "http://localhost"', "[redis] url: must be empty, 'memory', redis://"),
    ('[redis]\nurl = "redis://host:port/0"', "[redis] url:"),
    ('[routing]\nopen_empty_levels = "yes"', "[routing] open_empty_levels: must be true or false"),
    ('[routing]\ndomain = "a{b}"', "[routing] domain:"),
    ("[email]\nmax_bytes = 0", "[email] max_bytes: must be an integer >= 1"),
    ('[email]\naddresses = ["nobody"]', "[email] addresses:"),
    ('[sms]\nfrom_number = "0151 123"', "[sms] from_number:"),
    ('[sms]\ndefault_region = "germany"', "[sms] default_region:"),
    ('[voice]\npbx_url = "ftp://pbx"', "[voice] pbx_url:"),
    ("[presence]\nttl_s = true", "[presence] ttl_s: must be a number > 0, got True"),
    (
        '[[priority.rules]]\nfield = "coins"\nop = "like"\nvalue = 1\npoints = 1',
        "[[priority.rules]] #1 op: must be one of eq, ne, gt, gte, lt, lte, in, truthy",
    ),
    ('[[priority.rules]]\nfield = "coins"\nop = "gte"\nvalue = 1', "[[priority.rules]] #1 points:"),
    (
        '[[priority.rules]]\nfield = "coins"\nop = "gte"\nvalue = "many"\npoints = 1',
        "[[priority.rules]] #1 value: must be a number",
    ),
    (
        '[[priority.rules]]\nfield = "hot"\nop = "truthy"\nvalue = true\npoints = 500',
        "[[priority.rules]] #1 points: must be an integer from -100 to 100",
    ),
    (
        '[[priority.rules]]\nfield = "hot"\nop = "truthy"\nvalue = true\npoints = 1\nweight = 2',
        "[[priority.rules]] #1 weight: unknown key",
    ),
    ("[priority]\norder = 1", "[priority] order: unknown key"),
]


@pytest.mark.parametrize(("text", "expected"), FILE_ERRORS)
def test_file_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(write(tmp_path, text), {})
    assert message.startswith(expected)
    assert "\n" not in message


ENV_ERRORS = [
    (
        {"OMNIROUTE_RESERVATION_TIMEOUT_S": "abc"},
        "OMNIROUTE_RESERVATION_TIMEOUT_S: must be a number > 0, got 'abc'",
    ),
    ({"OMNIROUTE_PRESENCE_TTL_S": "nan"}, "OMNIROUTE_PRESENCE_TTL_S: must be a number > 0"),
    ({"OMNIROUTE_SERVER_PORT": "http"}, "OMNIROUTE_SERVER_PORT: must be an integer"),
    ({"OMNIROUTE_ROUTING_OPEN_EMPTY_LEVELS": "maybe"}, "OMNIROUTE_ROUTING_OPEN_EMPTY_LEVELS:"),
    ({"OMNIROUTE_ELIGIBILITY_SIC": "PAM,BOSS"}, "OMNIROUTE_ELIGIBILITY_SIC: must be"),
    ({"OMNIROUTE_ELIGIBILITY_CSC": "PAM,SAM"}, "OMNIROUTE_ELIGIBILITY_CSC: tier PAM has no level"),
    ({"OMNIROUTE_LEVELS_SIC_TRN": "0"}, "OMNIROUTE_LEVELS_SIC_TRN: tier TRN is not eligible"),
    ({"OMNIROUTE_CAPACITY_VOICE_BLOCKS": "chat,chat"}, "OMNIROUTE_CAPACITY_VOICE_BLOCKS:"),
    ({"OMNIROUTE_REDIS_URL": "mysql://db"}, "OMNIROUTE_REDIS_URL: must be empty, 'memory'"),
    (
        {"OMNIROUTE_REDIS_URI": "redis://db"},
        "OMNIROUTE_REDIS_URI: no such setting (did you mean OMNIROUTE_REDIS_URL?)",
    ),
    ({"OMNIROUTE_PRIORITY_RULES": "x"}, "OMNIROUTE_PRIORITY_RULES: priority rules are read"),
]


@pytest.mark.parametrize(("env", "expected"), ENV_ERRORS)
def test_environment_errors_name_the_variable(env: dict[str, str], expected: str) -> None:
    message = error_of(None, env)
    assert message.startswith(expected)
    assert "\n" not in message


def test_the_environment_error_wins_over_a_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[reservation]\ntimeout_s = 30\n")
    message = error_of(path, {"OMNIROUTE_RESERVATION_TIMEOUT_S": "-3"})
    assert message.startswith("OMNIROUTE_RESERVATION_TIMEOUT_S: must be a number > 0, got '-3'")


def test_unreadable_and_malformed_files_name_the_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    assert error_of(missing).startswith(f"{missing}: cannot read the file")
    broken = write(tmp_path, "[reservation\ntimeout_s = 1\n")
    message = error_of(broken)
    assert message.startswith(f"{broken}: not valid TOML")
    assert "\n" not in message


def test_an_override_error_names_the_flag() -> None:
    with pytest.raises(SettingsError, match=r"^--port: must be an integer from 1 to 65535"):
        load_settings(None, {}, overrides=[Override("--port", "server", "port", "0")])
