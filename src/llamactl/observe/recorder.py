"""One ``Tally`` per proxied request, and the ``Recorder`` that counts them in batches.

The proxy creates a tally when a request arrives (``Recorder.begin``; ``None`` when both
the metrics and the activity log are off), fills in what it learns — the instance, the
response head, the first and last body pieces, the wait for a start — and ends it once
(``finish``), after the response's last byte went to the client. Ending a tally puts
what it learned aside as one tuple, and the tally goes. The recorder counts what was put
aside in one go (``fold``: it reads each ``usage`` from the pieces kept, counts the
request in the metrics and makes its activity row, another tuple) once ``FOLD_AT``
requests or ``FOLD_BYTES`` of kept pieces are waiting, before the metrics are scraped,
and when ``Recorder.drain`` hands the rows over to be written in one transaction (the
server, every ``activity.flush_interval``). Counting a few hundred requests back to back
costs a fraction of counting each as it ends, amid the proxy's own work. Nothing of a
request outlives its fold but its row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from llamactl.config import AppConfig
from llamactl.observe.metrics import Metrics, route_label
from llamactl.observe.usage import usage_of

__all__ = ["ActivityRow", "Recorder", "Tally"]

# Rows kept at most between two drains; beyond it the oldest are dropped (and counted),
# so that a server whose writes fail does not grow memory without end.
MAX_PENDING = 200_000
# Ended tallies put aside at most before they are counted, and the bytes of the body
# pieces they may hold (a large non-streamed response is one piece).
FOLD_AT = 256
FOLD_BYTES = 4 << 20
CLIENT_GONE = 499  # the client left before a response started (as nginx logs it)

_clock = time.perf_counter

# (time, instance, node, route, status, duration, ttfb, queue_wait, cold_start, streamed,
#  prompt_tokens, completion_tokens, tokens_per_second, key_id, key_name): the activity
# table's columns, in that order (see ``database.activity.COLUMNS``).
ActivityRow = tuple[
    float, str | None, str | None, str, int, float, float | None, float | None, bool, bool,
    int | None, int | None, float | None, int | None, str | None,
]  # fmt: skip


class Tally:
    """What is known of one request so far; see the module docstring."""

    __slots__ = (
        "_recorder", "backend", "began", "cold", "first", "first_byte", "instance", "key_id",
        "key_name", "last", "node", "over", "path", "previous", "queue_wait", "status",
        "streamed",
    )  # fmt: skip

    def __init__(self, recorder: Recorder, path: str) -> None:
        self._recorder = recorder
        self.path = path
        self.began = _clock()
        # What a request learns, if it does (the proxy sets the names and the key).
        self.instance: str | None = None
        self.backend = ""
        self.status = 0
        self.streamed = False
        self.first_byte: float | None = None
        self.queue_wait: float | None = None
        self.cold = False
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
        self.streamed = _is_stream(headers)

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
        """The request is over (its response ended, or the client left): count it, once.
        What is to be counted is kept as one tuple: the tally itself goes now."""
        if not self.over:
            self.over = True
            self._recorder.finish(
                (
                    self.began, _clock(), self.path, self.instance, self.backend,
                    self.status, self.streamed, self.first_byte, self.queue_wait,
                    self.cold, self.node, self.key_id, self.key_name, self.first,
                    self.previous, self.last,
                )
            )  # fmt: skip

    def discard(self) -> None:
        """Count nothing: the request is handled again another way (which counts it)."""
        self.over = True


# What ``Tally.finish`` hands over: began, ended, path, instance, backend, status,
# streamed, first_byte, queue_wait, cold, node, key_id, key_name, first, previous, last.
_Ended = tuple[
    float, float, str, str | None, str, int, bool, float | None, float | None, bool,
    str | None, int | None, str | None, bytes | None, bytes | None, bytes | None,
]  # fmt: skip


class Recorder:
    """Counts finished requests in ``metrics`` and makes their activity rows."""

    def __init__(self, config: AppConfig, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self._ended: list[_Ended] = []  # not counted yet
        self._held = 0  # bytes of the body pieces those keep
        self._rows: list[ActivityRow] = []  # counted, not written yet
        self.dropped = 0
        # Unix time of a perf_counter reading: a request's arrival without a clock call.
        self._epoch = time.time() - _clock()
        self.reconfigure(config)
        if metrics is not None:
            metrics.before_collect = self.fold

    def reconfigure(self, config: AppConfig) -> None:
        self.fold()  # what ended so far counts as the settings were
        self._activity = config.activity.enabled
        self._counting = self.metrics is not None and config.metrics.enabled

    def begin(self, path: str) -> Tally | None:
        """A tally for a request that arrived now, or ``None`` when nothing is counted."""
        if not (self._activity or self._counting):
            return None
        return Tally(self, path)

    def finish(self, ended: _Ended) -> None:
        """Put an ended request aside, to be counted with others (``fold``)."""
        waiting = self._ended
        waiting.append(ended)
        last = ended[15]
        if last is not None:
            self._held += len(last) if ended[13] is last else len(last) + 512
            if self._held >= FOLD_BYTES:
                self.fold()
                return
        if len(waiting) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        """Count the requests put aside; keep their activity rows (while the log is on)."""
        ended = self._ended
        if not ended:
            return
        self._ended, self._held = [], 0
        rows = self._count(ended, self.metrics if self._counting else None)
        if rows is None:
            return
        kept = self._rows
        kept.extend(rows)
        if len(kept) > MAX_PENDING:
            excess = len(kept) - MAX_PENDING + MAX_PENDING // 10
            del kept[:excess]
            self.dropped += excess

    def drain(self) -> list[ActivityRow]:
        """The activity rows of the requests that ended since the last drain, oldest
        first."""
        self.fold()
        rows, self._rows = self._rows, []
        return rows

    def _count(self, ended: list[_Ended], metrics: Metrics | None) -> list[ActivityRow] | None:
        """Count ``ended`` in ``metrics`` (if given); their activity rows, or ``None``
        while the log is off. One loop over plain tuples: this runs for every request."""
        rows: list[ActivityRow] | None = [] if self._activity else None
        epoch = self._epoch
        request = metrics.request if metrics is not None else None
        for (
            began, finished, path, instance, backend, status, streamed, first_byte,
            queue_wait, cold, node, key_id, key_name, first, previous, last,
        ) in ended:  # fmt: skip
            duration = finished - began
            if not status:
                status = CLIENT_GONE
            prompt = completion = rate = None
            if last is not None and status < 300:
                prompt, completion = usage_of(first, previous, last, streamed)
                if completion:
                    generating = duration - ((first_byte if streamed else queue_wait) or 0.0)
                    if generating > 0:
                        rate = completion / generating
            if request is not None:
                request(
                    instance or "", backend, route_label(path), status, duration,
                    first_byte, queue_wait, cold, prompt, completion,
                )  # fmt: skip
            if rows is not None and path.startswith("/v1/"):
                rows.append(
                    (
                        epoch + began, instance, node, path, status, duration, first_byte,
                        queue_wait, cold, streamed, prompt, completion, rate, key_id,
                        key_name,
                    )
                )  # fmt: skip
        return rows


def _is_stream(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(b"text/event-stream")
    return False
