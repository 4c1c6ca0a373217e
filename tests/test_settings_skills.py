"""`[skills]` in the settings: hard skills, widening, per-skill waits and skill rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from queues.policy import SkillRule
from router.settings import load_settings
from tests.test_settings import error_of, write


def test_the_shipped_file_asks_for_no_skills() -> None:
    policy = load_settings(None, {}).policy
    assert policy.skills_hard == ()
    assert policy.skills_widen_s == 60.0
    assert policy.skills_widen_by == {}
    assert policy.skill_rules == ()


def test_a_file_sets_hard_skills_waits_and_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [skills]
        hard = ["de", "fr"]
        widen_s = 45

        [skills.widen_by]
        billing = 20

        [[skills.rules]]
        field = "country"
        op = "in"
        value = ["FR", "BE"]
        skill = "fr"

        [[skills.rules]]
        field = "coins"
        op = "gte"
        value = 1000
        skill = "billing"
        min = 3
        """,
    )
    policy = load_settings(path, {}).policy
    assert policy.skills_hard == ("de", "fr")
    assert policy.skills_widen_s == 45.0
    assert policy.skills_widen_by == {"billing": 20.0}
    assert policy.skill_rules == (
        SkillRule("country", "in", ("FR", "BE"), "fr", 1),
        SkillRule("coins", "gte", 1000, "billing", 3),
    )
    assert policy.skills_of({"country": "BE", "coins": 5000}) == {"fr": 1, "billing": 3}
    assert policy.skills_of({"country": "DE"}) == {}


def test_the_environment_sets_the_plain_keys() -> None:
    env = {"OMNIROUTE_SKILLS_HARD": "de,es", "OMNIROUTE_SKILLS_WIDEN_S": "15"}
    policy = load_settings(None, env).policy
    assert policy.skills_hard == ("de", "es")
    assert policy.skills_widen_s == 15.0


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[skills]\nhard = ["de|fr"]\n', "[skills] hard"),
        ("[skills]\nwiden_s = -1\n", "[skills] widen_s"),
        ("[skills]\nlevel = 2\n", "[skills] level"),
        ("[skills.widen_by]\nbilling = -5\n", "[skills.widen_by] billing"),
        ('[skills.widen_by]\n"a,b" = 5\n', "[skills.widen_by] a,b"),
        ('[[skills.rules]]\nfield = "country"\nop = "eq"\nvalue = "FR"\n', "#1 skill: missing"),
        (
            '[[skills.rules]]\nfield = "c"\nop = "eq"\nvalue = "FR"\nskill = "fr"\nmin = 6\n',
            "[[skills.rules]] #1 min",
        ),
        (
            '[[skills.rules]]\nfield = "c"\nop = "gt"\nvalue = "x"\nskill = "fr"\n',
            "[[skills.rules]] #1 value",
        ),
        (
            '[[skills.rules]]\nfield = "c"\nop = "eq"\nvalue = 1\nskill = "fr"\npoints = 2\n',
            "[[skills.rules]] #1 points: unknown key",
        ),
    ],
)
def test_bad_skills_settings_fail_in_one_line_naming_the_key(
    tmp_path: Path, text: str, names: str
) -> None:
    message = error_of(write(tmp_path, text))
    assert names in message and "\n" not in message


def test_skill_rules_come_from_files_only() -> None:
    message = error_of(None, {"OMNIROUTE_SKILLS_RULES": "x"})
    assert message.startswith("OMNIROUTE_SKILLS_RULES: ") and "files only" in message
