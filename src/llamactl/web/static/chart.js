// Small SVG charts of time series for the dashboard: bars and lines over shared time
// buckets, with a zero-based y axis, a few grid lines and a legend. No dependencies, no
// network; the caller passes plain numbers and gets an element back.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const HEIGHT = 170;
  const PAD = { top: 10, right: 12, bottom: 22, left: 48 };

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function title(text) {
    const node = document.createElementNS(SVG, "title");
    node.textContent = text;
    return node;
  }

  // A round top for the y axis: 1, 2 or 5 times a power of ten, at least ``max``.
  function niceTop(max) {
    if (!(max > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(max)));
    for (const factor of [1, 2, 5, 10]) if (factor * power >= max) return factor * power;
    return 10 * power;
  }

  const pad = (number) => String(number).padStart(2, "0");

  function clock(seconds, withDate) {
    const d = new Date(seconds * 1000);
    const time = pad(d.getHours()) + ":" + pad(d.getMinutes());
    return withDate ? pad(d.getDate()) + "/" + pad(d.getMonth() + 1) + " " + time : time;
  }

  // Runs of consecutive buckets with a value: a line is broken where a bucket is missing
  // (no requests then) or has no value.
  function runs(points, step) {
    const found = [];
    let current = [];
    let last = null;
    for (const [time, value] of points) {
      if (value === null || value === undefined || (last !== null && time - last > step * 1.5)) {
        if (current.length) found.push(current);
        current = [];
      }
      if (value !== null && value !== undefined) current.push([time, value]);
      last = time;
    }
    if (current.length) found.push(current);
    return found;
  }

  // draw({ times, step, series: [{ name, kind: "bar" | "line", values, cls }], format, label,
  // width, start, end }) returns an <svg> ``width`` pixels wide; each value is a number or
  // null. The x axis spans start..end (unix seconds; the buckets' own span when not given).
  // Every bar is a rect.bar and every line point a circle.point, each with a <title>.
  function draw(spec) {
    const width = Math.max(240, Math.floor(spec.width || 600));
    const format = spec.format || String;
    const times = spec.times;
    const step = spec.step;
    const first = times.length ? times[0] : 0;
    const start = Math.min(spec.start ?? first, first);
    const end = Math.max(spec.end ?? 0, times.length ? times[times.length - 1] + step : start + step);
    const inner = { w: width - PAD.left - PAD.right, h: HEIGHT - PAD.top - PAD.bottom };
    let max = 0;
    for (const series of spec.series) for (const value of series.values) if (value > max) max = value;
    const top = niceTop(max);
    const x = (time) => PAD.left + ((time - start) / (end - start)) * inner.w;
    const y = (value) => PAD.top + inner.h - (value / top) * inner.h;
    const withDate = end - start > 86400;
    const root = svg("svg", {
      class: "chart", width, height: HEIGHT, viewBox: "0 0 " + width + " " + HEIGHT, role: "img",
      "aria-label": spec.label,
    });
    for (const fraction of [0, 0.5, 1]) {
      const value = top * fraction;
      root.append(
        svg("line", { class: "grid", x1: PAD.left, x2: width - PAD.right, y1: y(value), y2: y(value) }),
        svg("text", { class: "axis", x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end" }),
      );
      root.lastChild.textContent = format(value);
    }
    for (const [time, anchor] of [[start, "start"], [end, "end"]]) {
      const text = svg("text", { class: "axis", x: x(time), y: HEIGHT - 6, "text-anchor": anchor });
      text.textContent = clock(time, withDate);
      root.append(text);
    }
    const bars = spec.series.filter((series) => series.kind === "bar");
    const slot = (inner.w * step) / (end - start);
    const barWidth = Math.max(1, (slot * 0.8) / Math.max(1, bars.length));
    bars.forEach((series, index) => {
      const group = svg("g", { class: "series " + series.cls });
      series.values.forEach((value, i) => {
        if (value === null || value === undefined) return;
        const left = x(times[i]) + slot * 0.1 + index * barWidth;
        const rect = svg("rect", {
          class: "bar", x: left, y: y(value), width: barWidth, height: Math.max(0, y(0) - y(value)),
        }, title(clock(times[i], withDate) + " · " + series.name + ": " + format(value)));
        group.append(rect);
      });
      root.append(group);
    });
    for (const series of spec.series.filter((s) => s.kind === "line")) {
      const group = svg("g", { class: "series " + series.cls });
      const points = times.map((time, i) => [time, series.values[i]]);
      for (const run of runs(points, step)) {
        if (run.length > 1) {
          const path = run.map(([time, value]) => (x(time + step / 2)).toFixed(1) + "," + y(value).toFixed(1));
          group.append(svg("polyline", { class: "line", points: path.join(" ") }));
        }
        for (const [time, value] of run) {
          group.append(svg("circle", { class: "point", cx: x(time + step / 2), cy: y(value), r: 2.5 },
            title(clock(time, withDate) + " · " + series.name + ": " + format(value))));
        }
      }
      root.append(group);
    }
    return root;
  }

  function legend(series) {
    const list = document.createElement("ul");
    list.className = "legend";
    for (const item of series) {
      const entry = document.createElement("li");
      entry.className = item.cls;
      entry.textContent = item.name;
      list.append(entry);
    }
    return list;
  }

  window.llamactlChart = { draw, legend };
})();
