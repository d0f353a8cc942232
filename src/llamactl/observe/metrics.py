"""The Prometheus metrics: counted as things happen, exposed by ``prometheus_client``.

Requests are counted per instance, backend and route in plain Python numbers (one
dictionary lookup and a few additions per request, on the event loop, no locks); the
families are built from them when ``/metrics`` is scraped, by a collector registered in a
registry of llamactl's own, and written out by ``prometheus_client``. What is a state
rather than an event (in flight, queued, status, readiness, CPU and memory of each
backend) is read at scrape time from ``InstanceSample`` values.

Every series carries ``node`` (this llamactl's ``local_node``), and ``instance`` and
``backend`` where they apply (empty for a request no instance matched). Never a key, a
prompt or a path a client made up: routes outside the known ones count as ``other``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import psutil
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from llamactl.manager.lifecycle import StopCause

__all__ = ["BUCKETS", "InstanceSample", "Metrics", "route_label"]

# Upper bounds in seconds: from the proxy's own work (sub-millisecond) to long generations.
BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
_LE = [*(repr(bound) for bound in BUCKETS), "+Inf"]

_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/rerank",
        "/v1/reranking",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/audio/speech",
        "/v1/images/generations",
        "/v1/models",
        "/v1/tokenize",
        "/v1/detokenize",
    }
)
_STOP_CAUSES = tuple(cause.value for cause in StopCause)


def route_label(path: str) -> str:
    """The ``route`` label of a request path: a known ``/v1`` route, ``/v1/models/{id}``,
    ``/llama-cpp`` for llama.cpp's own endpoints, or ``other``."""
    if path in _ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    if path.startswith("/llama-cpp/"):
        return "/llama-cpp"
    return "other"


class _Histogram:
    """Counts per bucket (not cumulative) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        buckets = []
        for le, count in zip(_LE, self.counts, strict=True):
            running += count
            buckets.append((le, float(running)))
        return buckets


class _RouteSeries:
    """Everything counted for the requests of one instance, backend and route."""

    __slots__ = (
        "classes",
        "completion_tokens",
        "duration",
        "first_byte",
        "prompt_tokens",
        "queue_wait",
    )

    def __init__(self) -> None:
        self.classes = [0] * 6  # by status // 100
        self.duration = _Histogram()
        self.first_byte = (_Histogram(), _Histogram())  # warm, cold
        self.queue_wait = (_Histogram(), _Histogram())
        self.prompt_tokens = 0
        self.completion_tokens = 0


class _InstanceSeries:
    """Everything counted for one instance and backend, whatever the route."""

    __slots__ = (
        "crashes",
        "evictions",
        "failures",
        "holds",
        "load",
        "restarts",
        "starts",
        "stops",
    )

    def __init__(self) -> None:
        self.starts = 0
        self.stops = dict.fromkeys(_STOP_CAUSES, 0)
        self.crashes = 0
        self.restarts = 0
        self.failures = 0
        self.evictions = 0
        self.holds = 0
        self.load = _Histogram()


@dataclass(frozen=True)
class InstanceSample:
    """One instance as it is at scrape time."""

    name: str
    backend: str
    status: str
    ready: bool
    in_flight: int
    queued: int
    pid: int | None = None  # of its local backend process, if one runs


_STATUSES = ("stopped", "running", "failed", "restarting", "shutting_down")


def _nothing() -> None:
    pass


class Metrics(Collector):
    """The counts and their exposition; see the module docstring."""

    def __init__(self, node: str, samples: Callable[[], Iterable[InstanceSample]]) -> None:
        self.node = node
        self._samples = samples
        self._routes: dict[tuple[str, str, str], _RouteSeries] = {}
        self._instances: dict[tuple[str, str], _InstanceSeries] = {}
        self._processes: dict[int, psutil.Process] = {}
        # Called before each scrape: the recorder counts the requests it put aside.
        self.before_collect: Callable[[], None] = _nothing
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    # -- counting (from the proxy: see ``Recorder``) -----------------------------------

    def request(
        self,
        instance: str,
        backend: str,
        route: str,
        status: int,
        duration: float,
        first_byte: float | None,
        queue_wait: float | None,
        cold: bool,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        """One request that ended, with what its response reported in ``usage``."""
        key = (instance, backend, route)
        series = self._routes.get(key)
        if series is None:
            series = self._routes[key] = _RouteSeries()
        series.classes[min(status // 100, 5)] += 1
        histogram = series.duration  # observe(), inlined: this runs for every request
        histogram.counts[bisect_left(BUCKETS, duration)] += 1
        histogram.total += duration
        if first_byte is not None:
            histogram = series.first_byte[cold]
            histogram.counts[bisect_left(BUCKETS, first_byte)] += 1
            histogram.total += first_byte
        if queue_wait is not None:
            series.queue_wait[cold].observe(queue_wait)
        if prompt_tokens:
            series.prompt_tokens += prompt_tokens
        if completion_tokens:
            series.completion_tokens += completion_tokens

    def evicted(self, instance: str, backend: str) -> None:
        self._instance(instance, backend).evictions += 1

    def held(self, instance: str, backend: str) -> None:
        self._instance(instance, backend).holds += 1

    # -- manager.lifecycle.Lifecycle ---------------------------------------------------

    def started(self, name: str, backend: str) -> None:
        self._instance(name, backend).starts += 1

    def ready(self, name: str, backend: str, seconds: float) -> None:
        self._instance(name, backend).load.observe(seconds)

    def stopped(self, name: str, backend: str, cause: StopCause) -> None:
        self._instance(name, backend).stops[cause.value] += 1

    def crashed(self, name: str, backend: str) -> None:
        self._instance(name, backend).crashes += 1

    def restarting(self, name: str, backend: str) -> None:
        self._instance(name, backend).restarts += 1

    def failed(self, name: str, backend: str) -> None:
        self._instance(name, backend).failures += 1

    def _instance(self, name: str, backend: str) -> _InstanceSeries:
        key = (name, backend)
        series = self._instances.get(key)
        if series is None:
            series = self._instances[key] = _InstanceSeries()
        return series

    # -- Collector -----------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        self.before_collect()
        yield from self._request_families()
        yield from self._instance_families()
        yield from self._state_families(list(self._samples()))

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def _request_families(self) -> Iterator[Metric]:
        labels = ["instance", "backend", "node", "route"]
        requests = CounterMetricFamily(
            "llamactl_requests",
            "Requests by instance, route and status class (llamactl's own answers included).",
            labels=[*labels, "code"],
        )
        duration = HistogramMetricFamily(
            "llamactl_request_duration_seconds",
            "From the request's arrival to the end of its response.",
            labels=labels,
        )
        first_byte = HistogramMetricFamily(
            "llamactl_time_to_first_byte_seconds",
            "From the request's arrival to the first byte of the backend's response body; "
            "cold: the request waited for its instance to start.",
            labels=[*labels, "cold"],
        )
        queue_wait = HistogramMetricFamily(
            "llamactl_queue_wait_seconds",
            "How long a request waited for its instance to become ready (only those that waited).",
            labels=[*labels, "cold"],
        )
        for (instance, backend, route), series in self._routes.items():
            values = [instance, backend, self.node, route]
            for status_class, count in enumerate(series.classes):
                if count:
                    requests.add_metric([*values, f"{status_class}xx"], count)
            duration.add_metric(values, series.duration.cumulative(), series.duration.total)
            for cold, label in ((False, "false"), (True, "true")):
                for family, histogram in (
                    (first_byte, series.first_byte[cold]),
                    (queue_wait, series.queue_wait[cold]),
                ):
                    if any(histogram.counts):
                        family.add_metric([*values, label], histogram.cumulative(), histogram.total)
        yield from (requests, duration, first_byte, queue_wait)

    def _instance_families(self) -> Iterator[Metric]:
        labels = ["instance", "backend", "node"]

        def counter(name: str, text: str, extra: list[str] | None = None) -> CounterMetricFamily:
            return CounterMetricFamily(name, text, labels=[*labels, *(extra or [])])

        prompt = counter("llamactl_prompt_tokens", "Prompt tokens responses reported in usage.")
        completion = counter(
            "llamactl_completion_tokens", "Completion tokens responses reported in usage."
        )
        starts = counter("llamactl_instance_starts", "Backend processes started.")
        stops = counter("llamactl_instance_stops", "Backend processes stopped, by why.", ["reason"])
        crashes = counter("llamactl_instance_crashes", "Backend processes that exited unasked.")
        restarts = counter("llamactl_instance_restarts", "Automatic restarts after a crash.")
        failures = counter("llamactl_instance_failures", "Times an instance ended failed.")
        evictions = counter("llamactl_evictions", "Instances stopped to make room for another.")
        holds = counter(
            "llamactl_holds", "Instances held (no new requests) to make room for another."
        )
        load = HistogramMetricFamily(
            "llamactl_backend_load_seconds",
            "From a backend's start to its first readiness.",
            labels=labels,
        )
        tokens: dict[tuple[str, str], list[int]] = {}
        for (instance, backend, _route), route_series in self._routes.items():
            if instance:  # a request no instance matched reports no usage
                counts = tokens.setdefault((instance, backend), [0, 0])
                counts[0] += route_series.prompt_tokens
                counts[1] += route_series.completion_tokens
        for (instance, backend), (prompted, completed) in tokens.items():
            prompt.add_metric([instance, backend, self.node], prompted)
            completion.add_metric([instance, backend, self.node], completed)
        for (instance, backend), series in self._instances.items():
            values = [instance, backend, self.node]
            starts.add_metric(values, series.starts)
            for cause, count in series.stops.items():
                stops.add_metric([*values, cause], count)
            crashes.add_metric(values, series.crashes)
            restarts.add_metric(values, series.restarts)
            failures.add_metric(values, series.failures)
            evictions.add_metric(values, series.evictions)
            holds.add_metric(values, series.holds)
            load.add_metric(values, series.load.cumulative(), series.load.total)
        yield from (
            prompt, completion, starts, stops, crashes, restarts, failures, evictions, holds, load
        )  # fmt: skip

    def _state_families(self, samples: list[InstanceSample]) -> Iterator[Metric]:
        labels = ["instance", "backend", "node"]
        in_flight = GaugeMetricFamily(
            "llamactl_requests_in_flight",
            "Requests in flight (queued ones included).",
            labels=labels,
        )
        queued = GaugeMetricFamily(
            "llamactl_requests_queued",
            "Requests waiting for the instance to be ready.",
            labels=labels,
        )
        status = GaugeMetricFamily(
            "llamactl_instance_status",
            "1 for the instance's current status.",
            labels=[*labels, "status"],
        )
        ready = GaugeMetricFamily(
            "llamactl_instance_ready", "1 while the instance takes requests.", labels=labels
        )
        cpu = CounterMetricFamily(
            "llamactl_backend_cpu_seconds",
            "CPU time of the backend's processes (its children included).",
            labels=labels,
        )
        memory = GaugeMetricFamily(
            "llamactl_backend_resident_memory_bytes",
            "Resident memory of the backend's processes (its children included).",
            labels=labels,
        )
        live: set[int] = set()
        for sample in samples:
            values = [sample.name, sample.backend, self.node]
            in_flight.add_metric(values, sample.in_flight)
            queued.add_metric(values, sample.queued)
            for name in _STATUSES:
                status.add_metric([*values, name], 1.0 if sample.status == name else 0.0)
            ready.add_metric(values, 1.0 if sample.ready else 0.0)
            if sample.pid is not None:
                usage = self._usage(sample.pid)
                if usage is not None:
                    live.add(sample.pid)
                    cpu.add_metric(values, usage[0])
                    memory.add_metric(values, usage[1])
        for pid in set(self._processes) - live:
            del self._processes[pid]
        yield from (in_flight, queued, status, ready, cpu, memory)

    def _usage(self, pid: int) -> tuple[float, float] | None:
        """CPU seconds and resident bytes of ``pid`` and its descendants."""
        try:
            process = self._processes.get(pid)
            if process is None:
                process = self._processes[pid] = psutil.Process(pid)
            with process.oneshot():
                times = process.cpu_times()
                cpu, memory = times.user + times.system, float(process.memory_info().rss)
            children = process.children(recursive=True)
        except psutil.Error:
            self._processes.pop(pid, None)
            return None
        for child in children:
            try:
                with child.oneshot():
                    times = child.cpu_times()
                    cpu += times.user + times.system
                    memory += child.memory_info().rss
            except psutil.Error:
                continue  # it ended meanwhile
        return cpu, memory
