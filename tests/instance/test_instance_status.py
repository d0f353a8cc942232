"""Statuses and the transitions the lifecycle allows."""

from __future__ import annotations

import itertools

import pytest

from llamactl.errors import InvalidOptions, InvalidTransition
from llamactl.instance import Status, ensure_transition, parse_status

S = Status
ALLOWED = {
    (S.STOPPED, S.RUNNING),
    (S.STOPPED, S.FAILED),
    (S.FAILED, S.RUNNING),
    (S.FAILED, S.STOPPED),
    (S.RUNNING, S.STOPPED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.RESTARTING),
    (S.RUNNING, S.SHUTTING_DOWN),
    (S.RESTARTING, S.RUNNING),
    (S.RESTARTING, S.STOPPED),
    (S.RESTARTING, S.FAILED),
    (S.SHUTTING_DOWN, S.STOPPED),
    (S.SHUTTING_DOWN, S.FAILED),
}
PAIRS = list(itertools.product(Status, Status))
FORBIDDEN = [(old, new) for old, new in PAIRS if old is not new and (old, new) not in ALLOWED]


def test_status_values() -> None:
    assert [str(s) for s in Status] == [
        "stopped",
        "running",
        "failed",
        "restarting",
        "shutting_down",
    ]


@pytest.mark.parametrize(("old", "new"), sorted(ALLOWED), ids=str)
def test_allowed_transitions(old: Status, new: Status) -> None:
    ensure_transition(old, new)
    Status.check_transition(old, new)
    assert old.can_transition_to(new)


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_staying_put_is_always_allowed(status: Status) -> None:
    ensure_transition(status, status)
    assert status.can_transition_to(status)


@pytest.mark.parametrize(("old", "new"), FORBIDDEN, ids=str)
def test_forbidden_transitions_raise_a_sentence(old: Status, new: Status) -> None:
    assert not old.can_transition_to(new)
    with pytest.raises(InvalidTransition) as caught:
        ensure_transition(old, new)

    message = caught.value.message
    assert message[0].isupper()
    assert message.endswith(".")
    assert f"'{old}'" in message
    assert f"'{new}'" in message
    with pytest.raises(InvalidTransition):
        Status.check_transition(old, new)


def test_forbidden_list_is_what_the_lifecycle_rules_out() -> None:
    assert (S.STOPPED, S.RESTARTING) in FORBIDDEN
    assert (S.SHUTTING_DOWN, S.RUNNING) in FORBIDDEN
    assert (S.RESTARTING, S.SHUTTING_DOWN) in FORBIDDEN
    assert len(FORBIDDEN) == 25 - 5 - len(ALLOWED)


def test_message_names_where_the_instance_can_go() -> None:
    with pytest.raises(InvalidTransition) as caught:
        ensure_transition(S.STOPPED, S.SHUTTING_DOWN)
    assert caught.value.message == (
        "An instance cannot go from 'stopped' to 'shutting_down'; "
        "from 'stopped' it can only go to 'failed' or 'running'."
    )


@pytest.mark.parametrize("value", list(Status), ids=str)
def test_parse_status(value: Status) -> None:
    assert parse_status(str(value)) is value


@pytest.mark.parametrize("bad", ["paused", "Running", "", None, 1])
def test_parse_unknown_status(bad: object) -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_status(bad)
    assert caught.value.field == "status"
    assert caught.value.message.startswith("status: expected one of 'stopped', 'running'")
