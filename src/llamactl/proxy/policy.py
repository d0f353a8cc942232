"""What to do so that an instance can start under ``max_running_instances``.

A pure function of a snapshot: no clock, no process, no socket. ``Scheduler`` takes a
snapshot, asks ``decide`` and carries the decision out, then asks again, until the answer
is ``Admit`` or ``Refuse`` (or it has waited too long).

The rules:

- A limit of 0 allows nothing to run: refuse. A negative limit is no limit.
- Below the limit (counting every other instance that holds a slot: running or
  restarting), admit.
- At the limit with eviction off, refuse.
- Otherwise evict the least recently used instance that can stop without harm: running,
  nothing being served, and no request waiting for it to become ready unless it is held
  (requests that queued behind a hold start it again later).
- If there is none, hold the least recently used ready instance that is not held and has
  nobody waiting for it: its new requests queue while the ones it serves end, and then it
  can be evicted. One hold at a time per start.
- Otherwise wait for a change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Admit", "Decision", "Evict", "Hold", "Refuse", "Slot", "Snapshot", "Wait", "decide"]


@dataclass(frozen=True)
class Slot:
    """Another instance that holds a slot of ``max_running_instances``."""

    name: str
    running: bool  # running (a restarting instance holds a slot but is never stopped here)
    ready: bool  # its backend answers its health check
    serving: int = 0  # requests the backend is serving
    queued: int = 0  # requests waiting for it to become ready
    held: bool = False
    last_activity: float | None = None  # when its last request ended


@dataclass(frozen=True)
class Snapshot:
    """What the decision depends on."""

    target: str  # the instance that must start
    slots: tuple[Slot, ...]  # every other instance holding a slot
    limit: int  # max_running_instances; negative: no limit
    eviction: bool = True  # enable_lru_eviction
    holding: bool = False  # an instance held for this start is still held


@dataclass(frozen=True)
class Admit:
    """There is room: start the target."""


@dataclass(frozen=True)
class Evict:
    """Stop ``name`` (for ``reason``), then ask again."""

    name: str
    reason: str


@dataclass(frozen=True)
class Hold:
    """Hold ``name`` (its new requests queue), then wait for a change and ask again."""

    name: str


@dataclass(frozen=True)
class Wait:
    """Nothing can be done now: wait for a change and ask again."""


@dataclass(frozen=True)
class Refuse:
    """The target cannot start; ``message`` says why."""

    message: str


Decision = Admit | Evict | Hold | Wait | Refuse


def decide(snapshot: Snapshot) -> Decision:
    """The next step towards starting ``snapshot.target``; see the module docstring."""
    target, limit = snapshot.target, snapshot.limit
    if limit == 0:
        return Refuse(
            f"max_running_instances (0) allows no running instance: cannot start {target}"
        )
    if limit < 0 or len(snapshot.slots) < limit:
        return Admit()
    if not snapshot.eviction:
        return Refuse(
            f"max_running_instances ({limit}) is reached and enable_lru_eviction is off: "
            f"stop an instance to start {target}"
        )
    victim = _least_recently_used(snapshot.slots, _evictable)
    if victim is not None:
        return Evict(victim, f"to make room for {target} (max_running_instances={limit})")
    busy = None if snapshot.holding else _least_recently_used(snapshot.slots, _holdable)
    return Hold(busy) if busy is not None else Wait()


def _evictable(slot: Slot) -> bool:
    return slot.running and slot.serving == 0 and (slot.queued == 0 or slot.held)


def _holdable(slot: Slot) -> bool:
    return slot.running and slot.ready and not slot.held and slot.queued == 0


def _least_recently_used(slots: Iterable[Slot], eligible: Callable[[Slot], bool]) -> str | None:
    """The eligible slot whose last request ended first (never used counts as oldest);
    ties go to the first name."""
    candidates = [
        (slot.last_activity if slot.last_activity is not None else float("-inf"), slot.name)
        for slot in slots
        if eligible(slot)
    ]
    return min(candidates)[1] if candidates else None
