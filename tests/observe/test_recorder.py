"""A tally per request, counted in batches: metrics and activity rows from the same loop."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from llamactl.observe import InstanceSample, Metrics, Recorder
from llamactl.observe.recorder import CLIENT_GONE, FOLD_AT, FOLD_BYTES
from tests.support.config import fake_config

BODY = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":6}}'
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream")]


def recorder(tmp_path: Path, **settings: str) -> Recorder:
    metrics = Metrics("gpu1", lambda: [InstanceSample("alpha", "llama_cpp", "running", True, 2, 1)])
    return Recorder(fake_config(tmp_path, **settings), metrics)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_a_finished_request_is_a_row_and_a_count(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    tally = rec.begin("/v1/chat/completions")
    assert tally is not None
    tally.instance, tally.backend, tally.key_id, tally.key_name = "alpha", "llama_cpp", 4, "ci"
    tally.head(200, JSON)
    tally.chunk(BODY)
    tally.finish()
    tally.finish()  # once only
    rows = rec.drain()
    assert len(rows) == 1
    (_at, instance, node, route, status, duration, ttfb, wait, cold, streamed, prompt,
     completion, rate, key_id, key_name) = rows[0]  # fmt: skip
    assert (instance, node, route, status, cold, streamed) == (
        "alpha", None, "/v1/chat/completions", 200, 0, 0
    )  # fmt: skip
    assert ttfb is not None and 0 <= ttfb <= duration
    assert wait is None
    assert (prompt, completion, key_id, key_name) == (3, 6, 4, "ci")
    assert rate is not None and rate > 0
    assert rec.drain() == []
    assert rec.metrics is not None
    counted = samples(rec.metrics.exposition())
    labels = (("backend", "llama_cpp"), ("instance", "alpha"), ("node", "gpu1"))
    assert counted["llamactl_prompt_tokens_total", labels] == 3
    assert counted["llamactl_completion_tokens_total", labels] == 6
    assert counted["llamactl_requests_in_flight", labels] == 2
    assert counted["llamactl_requests_queued", labels] == 1
    route = (*labels, ("route", "/v1/chat/completions"))
    assert counted["llamactl_request_duration_seconds_count", route] == 1
    code = tuple(sorted((*route, ("code", "2xx"))))
    assert counted["llamactl_requests_total", code] == 1


def test_a_client_that_left_before_any_answer_is_a_499(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    tally = rec.begin("/v1/completions")
    assert tally is not None
    tally.finish()
    assert rec.drain()[0][4] == CLIENT_GONE


def test_a_stream_is_marked_and_its_rate_counts_from_the_first_byte(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    tally = rec.begin("/v1/chat/completions")
    assert tally is not None
    tally.head(200, SSE)
    tally.chunk(b"data: {}\n\n")
    tally.chunk(BODY)
    tally.finish()
    row = rec.drain()[0]
    assert row[9] == 1  # streamed
    assert row[11] == 6


def test_a_discarded_tally_and_a_llama_cpp_request_make_no_row(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    retried = rec.begin("/v1/chat/completions")
    page = rec.begin("/llama-cpp/alpha/props")
    assert retried is not None and page is not None
    retried.discard()
    retried.finish()
    page.answered(200)
    page.finish()
    assert rec.drain() == []  # the page is counted in the metrics only
    assert rec.metrics is not None
    text = rec.metrics.exposition().decode()
    assert 'route="/llama-cpp"' in text


def test_nothing_is_counted_with_both_off(tmp_path: Path) -> None:
    rec = recorder(tmp_path, LLAMACTL_METRICS_ENABLED="false", LLAMACTL_ACTIVITY_ENABLED="false")
    assert rec.begin("/v1/chat/completions") is None


def test_the_log_off_still_counts_the_metrics(tmp_path: Path) -> None:
    rec = recorder(tmp_path, LLAMACTL_ACTIVITY_ENABLED="false")
    tally = rec.begin("/v1/chat/completions")
    assert tally is not None
    tally.answered(404)
    tally.finish()
    assert rec.drain() == []
    assert rec.metrics is not None
    assert 'code="4xx"' in rec.metrics.exposition().decode()


def test_big_pieces_are_read_for_their_usage_without_a_copy(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    tally = rec.begin("/v1/embeddings")
    assert tally is not None
    tally.head(200, JSON)
    tally.chunk(b"[" + b"0.5," * 100_000)
    tally.chunk(b"1.0]" * 50_000 + BODY)
    tally.finish()
    assert rec.drain()[0][10:12] == (3, 6)


def ended(rec: Recorder, body: bytes = BODY) -> None:
    tally = rec.begin("/v1/chat/completions")
    assert tally is not None
    tally.instance, tally.backend = "alpha", "llama_cpp"
    tally.head(200, JSON)
    tally.chunk(body)
    tally.finish()


def counted_requests(rec: Recorder) -> float:
    assert rec.metrics is not None
    found = samples(rec.metrics.exposition())
    return sum(v for (name, _labels), v in found.items() if name == "llamactl_requests_total")


def test_ended_requests_are_counted_together_and_before_a_scrape(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    for _ in range(FOLD_AT - 1):
        ended(rec)
    assert rec._rows == []  # put aside, not counted yet
    ended(rec)
    assert len(rec._rows) == FOLD_AT and rec._ended == []  # the batch was counted
    ended(rec)
    assert counted_requests(rec) == FOLD_AT + 1  # a scrape counts what was put aside
    assert len(rec.drain()) == FOLD_AT + 1


def test_large_bodies_are_not_kept_waiting_for_a_batch(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    big = b'{"data":"' + b"x" * (FOLD_BYTES // 2) + b'","usage":{"prompt_tokens":3}}'
    ended(rec, big)
    assert len(rec._ended) == 1
    ended(rec, big)
    assert rec._ended == [] and len(rec._rows) == 2  # counted: their pieces can go
    assert all(row[10] == 3 for row in rec.drain())


def test_a_reload_counts_what_ended_under_the_old_settings(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    ended(rec)
    rec.reconfigure(fake_config(tmp_path, LLAMACTL_ACTIVITY_ENABLED="false"))
    assert len(rec.drain()) == 1  # ended while the log was on
    ended(rec)
    assert rec.drain() == []
    assert counted_requests(rec) == 2
