"""The eviction policy (``proxy.policy.decide``), table by table: no process, no socket.

Each case is a snapshot (the target, the other instances holding slots, the limit,
eviction on or off, whether a hold for this start is still on) and the decision expected.
The last test runs the policy through the ``Scheduler`` over real instances.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llamactl.instance import Status
from llamactl.manager import InstanceManager
from llamactl.proxy import Scheduler
from llamactl.proxy.policy import Admit, Decision, Evict, Hold, Refuse, Slot, Snapshot, Wait, decide
from tests.support.clock import FakeClock
from tests.support.config import FAST, fake_config, fake_options
from tests.support.services import data_db, migrated


def idle(name: str, used: float | None = None, **extra: object) -> Slot:
    """A running, ready instance with nothing in flight, last used at ``used``."""
    settings: dict[str, object] = {"running": True, "ready": True, "last_activity": used}
    settings.update(extra)
    return Slot(name, **settings)  # type: ignore[arg-type]


def evict(name: str, target: str = "t", limit: int = 1) -> Evict:
    return Evict(name, f"to make room for {target} (max_running_instances={limit})")


NO_LIMIT = "max_running_instances (0) allows no running instance: cannot start t"
NO_EVICTION = (
    "max_running_instances ({}) is reached and enable_lru_eviction is off: "
    "stop an instance to start t"
)

CASES: list[tuple[str, Snapshot, Decision]] = [
    # -- limits ------------------------------------------------------------------------
    ("no limit, nothing running", Snapshot("t", (), -1), Admit()),
    (
        "no limit, many running",
        Snapshot("t", tuple(idle(f"i{n}", n) for n in range(9)), -1),
        Admit(),
    ),
    ("limit 0 refuses even with nothing running", Snapshot("t", (), 0), Refuse(NO_LIMIT)),
    (
        "limit 0 refuses, eviction or not",
        Snapshot("t", (idle("a"),), 0, eviction=False),
        Refuse(NO_LIMIT),
    ),
    ("below the limit", Snapshot("t", (idle("a", 1),), 2), Admit()),
    ("nothing running, limit 1", Snapshot("t", (), 1), Admit()),
    ("at the limit: the only one goes", Snapshot("t", (idle("a", 5),), 1), evict("a")),
    (
        "over the limit (lowered by a reload)",
        Snapshot("t", (idle("a", 5), idle("b", 3)), 1),
        evict("b"),
    ),
    (
        "a restarting instance holds a slot",
        Snapshot("t", (idle("a", 1, running=False, ready=False),), 2),
        Admit(),
    ),
    # -- eviction off ------------------------------------------------------------------
    (
        "eviction off, at the limit",
        Snapshot("t", (idle("a"),), 1, eviction=False),
        Refuse(NO_EVICTION.format(1)),
    ),
    ("eviction off, below the limit", Snapshot("t", (idle("a"),), 2, eviction=False), Admit()),
    # -- least recently used -----------------------------------------------------------
    (
        "least recently used goes first",
        Snapshot("t", (idle("a", 30), idle("b", 10), idle("c", 20)), 3),
        evict("b", limit=3),
    ),
    (
        "never used counts as oldest",
        Snapshot("t", (idle("a", 1), idle("b")), 2),
        evict("b", limit=2),
    ),
    (
        "ties go to the first name",
        Snapshot("t", (idle("b", 7), idle("a", 7)), 2),
        evict("a", limit=2),
    ),
    (
        "never used ties go to the first name",
        Snapshot("t", (idle("z"), idle("m")), 2),
        evict("m", limit=2),
    ),
    # -- in flight ---------------------------------------------------------------------
    (
        "one serving, the other goes",
        Snapshot("t", (idle("a", 1, serving=1), idle("b", 9)), 2),
        evict("b", limit=2),
    ),
    ("the only one is serving: hold it", Snapshot("t", (idle("a", 1, serving=2),), 1), Hold("a")),
    (
        "all serving: hold the least recently used",
        Snapshot("t", (idle("a", 8, serving=1), idle("b", 2, serving=1)), 2),
        Hold("b"),
    ),
    (
        "all serving, a hold is on: wait",
        Snapshot(
            "t", (idle("a", 8, serving=1), idle("b", 2, serving=1, held=True)), 2, holding=True
        ),
        Wait(),
    ),
    # -- held --------------------------------------------------------------------------
    (
        "held and drained: evict it",
        Snapshot("t", (idle("a", 1, held=True),), 1, holding=True),
        evict("a"),
    ),
    (
        "held, drained, requests queued behind the hold: evict it",
        Snapshot("t", (idle("a", 1, held=True, queued=3),), 1, holding=True),
        evict("a"),
    ),
    (
        "held but still serving: wait",
        Snapshot("t", (idle("a", 1, held=True, serving=1),), 1, holding=True),
        Wait(),
    ),
    (
        "one hold per start: the other busy one is not held too",
        Snapshot(
            "t", (idle("a", 1, held=True, serving=1), idle("b", 5, serving=1)), 2, holding=True
        ),
        Wait(),
    ),
    (
        "a hold that ended (the instance restarted) allows another",
        Snapshot("t", (idle("a", 1, serving=1), idle("b", 5, serving=1)), 2, holding=False),
        Hold("a"),
    ),
    (
        "an instance held already is not held again",
        Snapshot("t", (idle("a", 1, held=True, serving=1),), 1),
        Wait(),
    ),
    # -- loading and waiting -----------------------------------------------------------
    (
        "loading with nobody waiting can go",
        Snapshot("t", (idle("a", None, ready=False),), 1),
        evict("a"),
    ),
    (
        "loading with requests waiting for it: not evicted, not held",
        Snapshot("t", (idle("a", None, ready=False, queued=2),), 1),
        Wait(),
    ),
    (
        "ready with requests waiting for it is not held",
        Snapshot("t", (idle("a", 1, queued=1, serving=1),), 1),
        Wait(),
    ),
    (
        "another model waiting: the idle one goes, not the awaited one",
        Snapshot("t", (idle("a", 1, ready=False, queued=4), idle("b", 9)), 2),
        evict("b", limit=2),
    ),
    (
        "several models waiting, nothing free: wait",
        Snapshot(
            "t", (idle("a", 1, ready=False, queued=1), idle("b", 2, ready=False, queued=1)), 2
        ),
        Wait(),
    ),
    (
        "restarting instances are never stopped here",
        Snapshot("t", (idle("a", 1, running=False, ready=False), idle("b", 5, serving=1)), 2),
        Hold("b"),
    ),
    (
        "only restarting instances: wait",
        Snapshot("t", (idle("a", 1, running=False, ready=False),), 1),
        Wait(),
    ),
]


@pytest.mark.parametrize(
    ("snapshot", "expected"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_decide(snapshot: Snapshot, expected: Decision) -> None:
    assert decide(snapshot) == expected


def test_the_table_is_large_enough_and_every_decision_occurs() -> None:
    assert len(CASES) >= 25
    assert {type(expected) for _, _, expected in CASES} == {Admit, Evict, Hold, Wait, Refuse}


@pytest.mark.anyio
async def test_on_demand_evicts_the_least_recently_used_instance_with_nothing_in_flight(
    tmp_path: Path,
) -> None:
    config = fake_config(tmp_path, LLAMACTL_MAX_RUNNING_INSTANCES="3")
    clock = FakeClock(1000.0)
    db = migrated(data_db(tmp_path))
    manager = InstanceManager(config, db, clock=clock, timings=FAST)
    manager.load()
    scheduler = Scheduler(manager, config)
    try:
        for name in ("a", "b", "c"):
            await manager.create(name, fake_options(on_demand_start=True))
            await scheduler.ready(name)
            clock.now += 10
            scheduler.begin(name)
            scheduler.end(name)
        scheduler.begin("a")  # the least recently used, but serving
        await manager.create("d", fake_options(on_demand_start=True))
        await scheduler.ready("d")
        statuses = {inst.name: inst.status for inst in manager.list()}
        scheduler.end("a")
    finally:
        await manager.shutdown()
        db.close()
    assert statuses == {
        "a": Status.RUNNING,
        "b": Status.STOPPED,
        "c": Status.RUNNING,
        "d": Status.RUNNING,
    }
