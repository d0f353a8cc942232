"""One ``Tally`` per proxied request, and the ``Recorder`` that counts them in batches.

The proxy creates a tally when a request arrives (``Recorder.begin``; ``None`` when both
the metrics and the activity log are off), fills in what it learns — the instance, the
response head, the first and last body pieces, the wait for a start — and ends it once
(``finish``), which only puts it in a list. ``Recorder.drain`` turns what the list holds
into counts (the metrics) and rows (the activity log) at once: the server calls it every
``activity.flush_interval`` and before each scrape of ``/metrics``. So a request costs
the hot path a few attribute writes; reading the ``usage``, counting and building rows
happen in one loop, off the request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from llamactl.config import AppConfig
from llamactl.observe.metrics import Metrics, route_label
from llamactl.observe.usage import usage_of

__all__ = ["ActivityRow", "Recorder", "Tally"]

# Tallies kept at most between two drains; beyond it the oldest are dropped (and counted),
# so that a server whose drains stopped does not grow memory without end.
MAX_PENDING = 200_000
CLIENT_GONE = 499  # the client left before a response started (as nginx logs it)
_KEPT = 4096  # bytes of a response's first and last pieces kept for its usage

_clock = time.perf_counter

# (time, instance, node, route, status, duration, ttfb, queue_wait, cold_start, streamed,
#  prompt_tokens, completion_tokens, tokens_per_second, key_id, key_name): the activity
# table's columns, in that order (see ``database.activity.COLUMNS``).
ActivityRow = tuple[
    float, str | None, str | None, str, int, float, float | None, float | None, int, int,
    int | None, int | None, float | None, int | None, str | None,
]  # fmt: skip


class Tally:
    """What is known of one request so far; see the module docstring."""

    # Class defaults: a request sets only what it learns.
    instance: str | None = None
    backend = ""
    status = 0
    headers: Sequence[tuple[bytes, bytes]] = ()
    first_byte: float | None = None
    queue_wait: float | None = None
    cold = False
    key_id: int | None = None
    key_name: str | None = None
    node: str | None = None
    first: bytes | None = None
    previous: bytes | None = None
    last: bytes | None = None
    ended = 0.0
    over = False

    def __init__(self, recorder: Recorder, path: str) -> None:
        self._recorder = recorder
        self.path = path
        self.began = _clock()

    def head(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """The backend's response head, on its way to the client."""
        self.status = status
        self.headers = headers

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
        if self.over:
            return
        self.over = True
        self.ended = _clock()
        first, last = self.first, self.last
        if first is not None and len(first) > _KEPT:
            self.first = first[:_KEPT]
        if last is not None and len(last) > _KEPT:
            self.last, self.previous = last[-_KEPT:], None
        elif self.previous is not None and len(self.previous) > _KEPT:
            self.previous = self.previous[-_KEPT:]
        self._recorder.pending.append(self)

    def discard(self) -> None:
        """Count nothing: the request is handled again another way (which counts it)."""
        self.over = True


class Recorder:
    """Counts finished requests in ``metrics`` and makes their activity rows."""

    def __init__(self, config: AppConfig, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self.pending: list[Tally] = []  # ended, not counted yet
        self._rows: list[ActivityRow] = []  # counted, not written yet
        self.dropped = 0
        # Unix time of a perf_counter reading: a request's arrival without a clock call.
        self._epoch = time.time() - _clock()
        self.reconfigure(config)

    def reconfigure(self, config: AppConfig) -> None:
        self._activity = config.activity.enabled
        self._counting = self.metrics is not None and config.metrics.enabled

    def begin(self, path: str) -> Tally | None:
        """A tally for a request that arrived now, or ``None`` when nothing is counted."""
        if not (self._activity or self._counting):
            return None
        pending = self.pending
        if len(pending) >= MAX_PENDING:
            del pending[: MAX_PENDING // 10]
            self.dropped += MAX_PENDING // 10
        return Tally(self, path)

    def count(self) -> None:
        """Count every request that ended since the last count (the metrics); keep their
        activity rows (none while the log is off) for ``drain``."""
        pending, self.pending = self.pending, []
        metrics = self.metrics if self._counting else None
        rows = self._rows
        activity = self._activity
        for tally in pending:
            row = self._count(tally, metrics)
            if activity and tally.path.startswith("/v1/"):
                rows.append(row)
        if len(rows) > MAX_PENDING:
            self.dropped += len(rows) - MAX_PENDING
            del rows[: len(rows) - MAX_PENDING]

    def drain(self) -> list[ActivityRow]:
        """``count``, then the activity rows of every request counted since the last
        drain, oldest first."""
        self.count()
        rows, self._rows = self._rows, []
        return rows

    def _count(self, tally: Tally, metrics: Metrics | None) -> ActivityRow:
        duration = tally.ended - tally.began
        status = tally.status or CLIENT_GONE
        first_byte, queue_wait, last = tally.first_byte, tally.queue_wait, tally.last
        prompt = completion = None
        if last is not None and status < 300:
            prompt, completion = usage_of(tally.first, tally.previous, last)
        streamed = _is_stream(tally.headers)
        instance, backend = tally.instance, tally.backend
        if metrics is not None:
            name = instance or ""
            route = route_label(tally.path)
            metrics.request(
                name, backend, route, status, duration, first_byte, queue_wait, tally.cold
            )
            if prompt is not None or completion is not None:
                metrics.tokens(name, backend, prompt, completion)
        rate = None
        if completion:
            generating = duration - ((first_byte if streamed else queue_wait) or 0.0)
            rate = completion / generating if generating > 0 else None
        return (
            self._epoch + tally.began,
            instance,
            tally.node,
            tally.path[:200],
            status,
            duration,
            first_byte,
            queue_wait,
            int(tally.cold),
            int(streamed),
            prompt,
            completion,
            rate,
            tally.key_id,
            tally.key_name,
        )


def _is_stream(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(b"text/event-stream")
    return False
