"""The flags of ``llamactl keys create|edit`` read into the keys API's JSON, and the
lines ``keys list|show`` print, as pure functions of their input and the time now."""

from __future__ import annotations

import calendar
import datetime
import re

import click
import pytest

from llamactl.cli.key_options import LEVELS, expiry, key_changes, level_of, new_key, parse_grants
from llamactl.cli.tables import format_span, key_lines, keys_lines

NOW = 1_800_000_000.0
DAY = 86400


def grants(*values: str) -> object:
    return parse_grants(click.Context(click.Command("x")), click.Option(["--instance"]), values)


# -- --instance ------------------------------------------------------------------------


def test_each_level_is_a_pair_of_the_apis_flags() -> None:
    assert grants("alpha:use", "beta:start", "gamma:evict", "delta") == [
        {"instance": "alpha", "can_start": False, "can_evict": False},
        {"instance": "beta", "can_start": True, "can_evict": False},
        {"instance": "gamma", "can_start": True, "can_evict": True},
        {"instance": "delta", "can_start": True, "can_evict": True},
    ]


@pytest.mark.parametrize(
    ("can_start", "can_evict", "level"),
    [(False, False, "use"), (True, False, "start"), (True, True, "evict"), (False, True, "use")],
)
def test_a_stored_permission_is_named_by_what_it_lets_a_key_do(
    can_start: bool, can_evict: bool, level: str
) -> None:
    assert level_of({"can_start": can_start, "can_evict": can_evict}) == level
    assert level in LEVELS


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (("x:fly",), "'fly'"),
        ((":use",), "':use'"),
        (("",), "''"),
        (("alpha", "alpha:use"), "'alpha' is given twice"),
    ],
)
def test_a_bad_instance_names_the_flag_and_the_value(values: tuple[str, ...], named: str) -> None:
    with pytest.raises(click.BadParameter) as caught:
        grants(*values)
    message = caught.value.format_message()
    assert message.startswith("Invalid value for --instance: "), message
    assert named in message


# -- --expires -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * DAY), ("12h", 12 * 3600), ("90m", 90 * 60), ("45s", 45), ("2w", 14 * DAY),
     ("1d12h", DAY + 12 * 3600)],
)  # fmt: skip
def test_a_duration_counts_from_now(text: str, seconds: int) -> None:
    assert expiry(text, NOW) == int(NOW) + seconds


def test_a_date_or_time_is_local_unless_it_names_its_zone() -> None:
    year = datetime.datetime.fromtimestamp(NOW).year + 1
    local = datetime.datetime(year, 1, 31, 18, 0)
    assert expiry(f"{year}-01-31T18:00", NOW) == int(local.timestamp())
    assert expiry(f"{year}-01-31", NOW) == int(datetime.datetime(year, 1, 31).timestamp())
    utc = calendar.timegm((year, 1, 31, 18, 0, 0))
    assert expiry(f"{year}-01-31T18:00Z", NOW) == utc
    assert expiry(f"{year}-01-31T18:00+02:00", NOW) == utc - 2 * 3600


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("soon", "expected a duration from now (30d, 12h, 90m) or a date or time"),
        ("30", "expected a duration"),
        ("1y", "expected a duration"),
        ("0h", "'0h' is no time at all"),
        ("2001-01-01", "'2001-01-01' is in the past"),
        ("9" * 30 + "w", "is too far ahead"),
    ],
)
def test_an_expiry_that_cannot_be_read_names_the_flag(text: str, said: str) -> None:
    with pytest.raises(click.BadParameter) as caught:
        expiry(text, NOW)
    message = caught.value.format_message()
    assert message.startswith("Invalid value for --expires: "), message
    assert said in message


# -- the bodies ------------------------------------------------------------------------


def test_a_new_key_sends_what_was_given() -> None:
    assert new_key("ci", [], {"expires_at": None, "max_concurrent": None}, False) == {
        "name": "ci",
        "permission_mode": "allow_all",
    }
    grant = {"instance": "a", "can_start": True, "can_evict": False}
    body = new_key("ci", [grant], {"expires_at": 5, "requests_per_minute": 60}, True)
    assert body == {
        "name": "ci",
        "permission_mode": "per_instance",
        "permissions": [grant],
        "expires_at": 5,
        "requests_per_minute": 60,
        "disabled": True,
    }


def test_changes_name_only_what_the_flags_change() -> None:
    assert key_changes(None, None, {"max_concurrent": (None, False)}, None) == {}
    limits = {
        "expires_at": (None, True),
        "max_concurrent": (3, False),
        "requests_per_minute": (None, False),
    }
    assert key_changes("renamed", [], limits, False) == {
        "name": "renamed",
        "permission_mode": "allow_all",
        "permissions": [],
        "expires_at": None,
        "max_concurrent": 3,
        "disabled": False,
    }


# -- the lines -------------------------------------------------------------------------


def body(**fields: object) -> dict[str, object]:
    return {
        "id": 7,
        "name": "ci",
        "prefix": "llamactl-0123abcd",
        "user_id": "system",
        "permission_mode": "allow_all",
        "permissions": [],
        "max_concurrent": None,
        "requests_per_minute": None,
        "expires_at": None,
        "disabled": False,
        "created_at": int(NOW) - 3 * DAY,
        "updated_at": int(NOW) - 3 * DAY,
        "last_used_at": None,
        "requests": 0,
        **fields,
    }


PER_INSTANCE = {
    "permission_mode": "per_instance",
    "permissions": [
        {"instance_id": 1, "instance_name": "alpha", "can_start": False, "can_evict": False},
        {"instance_id": 2, "instance_name": "beta", "can_start": True, "can_evict": True},
    ],
}


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59, "59s"), (3599, "59m 59s"), (DAY - 1, "23h 59m"), (DAY, "1d 00h"),
     (30 * DAY - 61, "29d 23h")],
)  # fmt: skip
def test_spans(seconds: int, shown: str) -> None:
    assert format_span(seconds) == shown


def test_the_list_says_what_each_key_opens_and_when_in_words() -> None:
    keys = [
        body(),
        body(
            id=8,
            name="per",
            **PER_INSTANCE,
            max_concurrent=2,
            requests_per_minute=60,
            expires_at=int(NOW) + 30 * DAY - 60,
            disabled=True,
            last_used_at=int(NOW) - 125,
            requests=12,
        ),
        body(id=9, name="old", expires_at=int(NOW) - 7200, requests_per_minute=5),
    ]
    lines = keys_lines(keys, NOW)
    assert all(line == line.rstrip() for line in lines)
    assert [re.split(r"\s{2,}", line) for line in lines] == [
        ["ID", "NAME", "PREFIX", "MODE", "INSTANCES", "LIMITS", "EXPIRES", "DISABLED",
         "LAST USED", "REQUESTS"],
        ["7", "ci", "llamactl-0123abcd", "allow_all", "all", "-", "never", "no", "never", "0"],
        ["8", "per", "llamactl-0123abcd", "per_instance", "alpha:use,beta:evict",
         "2 at once, 60/min", "in 29d 23h", "yes", "2m 05s ago", "12"],
        ["9", "old", "llamactl-0123abcd", "allow_all", "all", "5/min", "expired 2h 00m ago",
         "no", "never", "0"],
    ]  # fmt: skip


def test_show_gives_each_field_a_line_and_each_instance_its_level() -> None:
    expires = int(NOW) + DAY
    lines = key_lines(body(**PER_INSTANCE, expires_at=expires), NOW)
    local = datetime.datetime.fromtimestamp(expires).isoformat(sep=" ")
    assert lines[5:8] == [
        "permissions          alpha:use (while it runs)",
        "                     beta:evict (may start it, stopping others to make room)",
        "max_concurrent       -",
    ]
    fields = dict(line.split(None, 1) for line in lines if not line.startswith(" "))
    assert fields["expires_at"] == f"{local} (in 1d 00h)"
    assert fields["created_at"].endswith("(3d 00h ago)")
    shown = (fields["last_used_at"], fields["disabled"], fields["requests"])
    assert shown == ("never", "false", "0")
    assert key_lines(body(), NOW)[5] == "permissions          every instance"
    assert "expires_at           never" in key_lines(body(), NOW)
