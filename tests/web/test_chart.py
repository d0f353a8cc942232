"""The dashboard's SVG charts (static/chart.js), drawn in Chromium from given points: one
point, gaps, values missing, all zero; every coordinate a number, each point and bar
titled. The charts of a real instance are tested in test_activity_page.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.support.dashboard import open_dashboard
from tests.support.web import SKIP_REASON, Server

if TYPE_CHECKING:
    from playwright.sync_api import Page

sync_api = pytest.importorskip("playwright.sync_api", reason=SKIP_REASON)

T0 = 1_764_770_000 - 1_764_770_000 % 60

# What the chart drawn from ``spec`` holds: its points, bars, lines, and any attribute
# that is not a finite number where one is expected.
DRAW = """spec => {
  const node = window.llamactlChart.draw(spec);
  document.body.append(node);
  const numeric = ["x", "y", "width", "height", "cx", "cy", "x1", "x2", "y1", "y2"];
  const bad = [];
  for (const child of node.querySelectorAll("*")) {
    for (const name of numeric) {
      const value = child.getAttribute(name);
      const finite = value === null || Number.isFinite(Number(value));
      if (!finite) bad.push(child.tagName + " " + name + "=" + value);
    }
    const points = child.getAttribute("points");
    if (points !== null && /NaN|Infinity/.test(points)) bad.push("polyline " + points);
  }
  const box = node.getBoundingClientRect();
  return {
    points: node.querySelectorAll("circle.point").length,
    bars: node.querySelectorAll("rect.bar").length,
    barWidths: [...node.querySelectorAll("rect.bar")].map((r) => Number(r.getAttribute("width"))),
    lines: node.querySelectorAll("polyline.line").length,
    titles: [...node.querySelectorAll(".point title, .bar title")].map((t) => t.textContent),
    labels: [...node.querySelectorAll("text.axis")].map((t) => t.textContent),
    width: box.width,
    bad,
  };
}"""


def draw(
    page: Page, times: list[int], series: list[dict[str, Any]], step: int = 60, **span: int
) -> Any:
    spec = {"times": times, "step": step, "series": series, "width": 500, "label": "test", **span}
    return page.evaluate(DRAW, spec)


@pytest.fixture
def blank(page: Page, server: Server) -> Page:
    open_dashboard(page, server.url)
    return page


def line(values: list[float | None], name: str = "p50") -> dict[str, Any]:
    return {"name": name, "kind": "line", "cls": "s-p50", "values": values}


def bar(values: list[float | None], name: str = "requests") -> dict[str, Any]:
    return {"name": name, "kind": "bar", "cls": "s-requests", "values": values}


def test_one_point_is_a_dot_and_a_bar(blank: Page) -> None:
    drawn = draw(blank, [T0], [bar([3]), line([0.25])])
    assert drawn["bad"] == []
    assert (drawn["points"], drawn["bars"], drawn["lines"]) == (1, 1, 0)
    assert drawn["titles"][0].endswith("requests: 3")
    assert drawn["titles"][1].endswith("p50: 0.25")
    assert drawn["width"] == 500


def test_a_missing_bucket_or_value_breaks_the_line(blank: Page) -> None:
    times = [T0, T0 + 60, T0 + 120, T0 + 300, T0 + 360]
    drawn = draw(blank, times, [line([1, 2, None, 4, 5])])
    assert drawn["bad"] == []
    assert drawn["points"] == 4  # the missing value has no dot
    assert drawn["lines"] == 2  # T0..T0+60, then T0+300..T0+360 (a gap of 4 buckets)


def test_all_zero_and_no_points_draw_without_nan(blank: Page) -> None:
    zero = draw(blank, [T0, T0 + 60], [bar([0, 0]), line([0, 0])])
    assert zero["bad"] == [] and zero["bars"] == 2 and zero["points"] == 2
    empty = draw(blank, [], [bar([]), line([])])
    assert empty["bad"] == [] and empty["bars"] == empty["points"] == 0
    assert len(empty["labels"]) == 5  # the axes are still drawn


def test_the_y_axis_tops_at_a_round_number(blank: Page) -> None:
    drawn = draw(blank, [T0, T0 + 60], [bar([3, 7])])
    assert drawn["labels"][:3] == ["0", "5", "10"]


def test_the_x_axis_spans_the_period_asked_for(blank: Page) -> None:
    """One bucket of a 60-bucket hour is a slim bar, not the whole chart."""
    hour = draw(blank, [T0 + 3540], [bar([2])], start=T0, end=T0 + 3600)
    assert hour["bad"] == []
    assert 0 < hour["barWidths"][0] < 440 / 50
    alone = draw(blank, [T0], [bar([2])])
    assert alone["barWidths"][0] > 440 / 2
