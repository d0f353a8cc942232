"""One ``Tally`` per proxied request, and the ``Recorder`` that counts it when it ends.

The proxy creates a tally when a request arrives (``Recorder.begin``; ``None`` when both
the metrics and the activity log are off), fills in what it learns — the instance, the
response status, the first body piece, the wait for a start — and ends it exactly once
(``finish``). Ending it counts the request in the metrics and queues its activity row;
the rows are written in batches by whoever calls ``take_activity`` (the server, every
``activity.flush_interval``). Nothing here blocks or allocates more than a tuple.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from llamactl.config import AppConfig
from llamactl.database.activity import Activity
from llamactl.observe.metrics import Metrics, route_label
from llamactl.observe.usage import usage_of

__all__ = ["Recorder", "Tally"]

# Rows kept in memory at most between two writes; beyond it the oldest are dropped (and
# counted), so that a database that cannot be written does not grow memory without end.
MAX_PENDING = 200_000
CLIENT_GONE = 499  # the client left before a response started (as nginx logs it)

_clock = time.perf_counter
_wall = time.time


class Tally:
    """What is known of one request so far; see the module docstring."""

    __slots__ = (
        "_recorder",
        "arrived",
        "backend",
        "began",
        "cold",
        "first",
        "first_byte",
        "instance",
        "key_id",
        "key_name",
        "last",
        "node",
        "over",
        "path",
        "previous",
        "queue_wait",
        "status",
        "streamed",
    )

    def __init__(self, recorder: Recorder, path: str) -> None:
        self._recorder = recorder
        self.path = path
        self.began = _clock()
        self.arrived = _wall()
        self.instance: str | None = None
        self.backend = ""
        self.status = 0
        self.first_byte: float | None = None
        self.queue_wait: float | None = None
        self.cold = False
        self.streamed = False
        self.key_id: int | None = None
        self.key_name: str | None = None
        self.node: str | None = None
        self.first: bytes | None = None
        self.previous: bytes | None = None
        self.last: bytes | None = None
        self.over = False

    def head(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """The backend's response head, on its way to the client."""
        self.status = status
        for name, value in headers:
            if name == b"content-type":
                self.streamed = value.startswith(b"text/event-stream")
                break

    def chunk(self, data: bytes) -> None:
        """A piece of the backend's response body went to the client."""
        if self.first is None:
            self.first_byte = _clock() - self.began
            self.first = data
        self.previous = self.last
        self.last = data

    def waited(self, began: float, cold: bool) -> None:
        """The request waited for its instance from ``began`` (``time.perf_counter``) to
        now; ``cold``: the instance was not running and ready when it arrived."""
        self.queue_wait = _clock() - began
        self.cold = cold

    def answered(self, status: int) -> None:
        """The status of the response, if none is known yet (llamactl's own answer)."""
        if not self.status:
            self.status = status

    def finish(self) -> None:
        """The request is over (its response ended, or the client left): count it, once."""
        if not self.over:
            self.over = True
            self._recorder.finish(self)

    def discard(self) -> None:
        """Count nothing: the request is handled again another way (which counts it)."""
        self.over = True


class Recorder:
    """Counts finished requests in ``metrics`` and queues their activity rows."""

    def __init__(self, config: AppConfig, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self._pending: list[tuple[object, ...]] = []
        self.dropped = 0
        self.reconfigure(config)

    def reconfigure(self, config: AppConfig) -> None:
        self._activity = config.activity.enabled
        self._counting = self.metrics is not None and config.metrics.enabled

    @property
    def on(self) -> bool:
        return self._activity or self._counting

    def begin(self, path: str) -> Tally | None:
        """A tally for a request that arrived now, or ``None`` when nothing is counted."""
        if not (self._activity or self._counting):
            return None
        return Tally(self, path)

    def finish(self, tally: Tally) -> None:
        duration = _clock() - tally.began
        status = tally.status or CLIENT_GONE
        instance = tally.instance
        prompt = completion = None
        if tally.last is not None and status < 300:
            prompt, completion = usage_of(tally.first, tally.previous, tally.last)
        metrics = self.metrics
        if self._counting and metrics is not None:
            name = instance or ""
            metrics.request(
                name,
                tally.backend,
                route_label(tally.path),
                status,
                duration,
                tally.first_byte,
                tally.queue_wait,
                tally.cold,
            )
            if prompt is not None or completion is not None:
                metrics.tokens(name, tally.backend, prompt, completion)
        if self._activity and tally.path.startswith("/v1/"):
            self._queue(tally, status, duration, prompt, completion)

    def _queue(
        self,
        tally: Tally,
        status: int,
        duration: float,
        prompt: int | None,
        completion: int | None,
    ) -> None:
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            del pending[: MAX_PENDING // 10]
            self.dropped += MAX_PENDING // 10
        pending.append(
            (
                tally.arrived,
                tally.instance,
                tally.path,
                status,
                duration,
                tally.first_byte,
                tally.queue_wait,
                tally.cold,
                tally.streamed,
                prompt,
                completion,
                tally.key_id,
                tally.key_name,
                tally.node,
            )
        )

    def take_activity(self) -> list[Activity]:
        """The rows queued since the last call, as ``Activity`` values, oldest first."""
        pending, self._pending = self._pending, []
        return [_activity(row) for row in pending]


def _activity(row: tuple[object, ...]) -> Activity:
    (arrived, instance, path, status, duration, first_byte, queue_wait, cold, streamed,
     prompt, completion, key_id, key_name, node) = row  # fmt: skip
    return Activity(
        time=_float(arrived),
        instance=_text(instance),
        route=str(path)[:200],
        status=_int(status) or CLIENT_GONE,
        duration=_float(duration),
        ttfb=_optional_float(first_byte),
        queue_wait=_optional_float(queue_wait),
        cold_start=bool(cold),
        streamed=bool(streamed),
        prompt_tokens=_optional_int(prompt),
        completion_tokens=_optional_int(completion),
        tokens_per_second=_rate(completion, duration, first_byte, queue_wait, bool(streamed)),
        key_id=_optional_int(key_id),
        key_name=_text(key_name),
        node=_text(node),
    )


def _rate(
    completion: object, duration: object, first_byte: object, queue_wait: object, streamed: bool
) -> float | None:
    """Completion tokens per second of generation: from the first byte to the end for a
    stream, from the end of the wait for a start to the end otherwise."""
    tokens = _optional_int(completion)
    if not tokens:
        return None
    began = _optional_float(first_byte) if streamed else _optional_float(queue_wait)
    generating = _float(duration) - (began or 0.0)
    return round(tokens / generating, 3) if generating > 0 else None


def _float(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)


def _optional_float(value: object) -> float | None:
    return None if value is None else _float(value)


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _optional_int(value: object) -> int | None:
    return None if value is None else _int(value)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
