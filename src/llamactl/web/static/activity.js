// The Activity page (the request log, live) and each instance's charts, both read from
// api/v1/activity. Uses what app.js shares (window.llamactl); all text is set as text.
"use strict";

(function () {
  const { state, el, api, enc, showView, setText, registerPage } = window.llamactl;
  const $ = (id) => document.getElementById(id);
  const LIVE_MS = 2000;
  const PAGE_SIZE = 100;
  const CHARTS_MS = 10000;

  // -- formatting -------------------------------------------------------------------------

  const pad = (number) => String(number).padStart(2, "0");

  // Seconds as "840 ms" or "1.24 s"; "—" for none.
  function duration(seconds) {
    if (typeof seconds !== "number") return "—";
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    return (seconds < 10 ? seconds.toFixed(2) : seconds.toFixed(1)) + " s";
  }

  // The time of day, with the date when it is not today.
  function when(seconds) {
    const d = new Date(seconds * 1000);
    const time = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    if (d.toDateString() === new Date().toDateString()) return time;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + time;
  }

  function tokens(row) {
    if (typeof row.prompt_tokens !== "number" && typeof row.completion_tokens !== "number") return "—";
    const count = (value) => (typeof value === "number" ? String(value) : "?");
    return count(row.prompt_tokens) + " / " + count(row.completion_tokens);
  }

  const rate = (value) => (typeof value === "number" ? value.toFixed(1) : "—");

  function statusClass(status) {
    return status >= 500 ? "s5xx" : status >= 400 ? "s4xx" : status >= 300 ? "s3xx" : "s2xx";
  }

  // -- the Activity page ------------------------------------------------------------------

  const log = {
    timer: null,
    generation: 0, // counts reloads: an answer to an older one is dropped
    newest: null, // the largest id shown
    older: null, // next_before of the last page read, or null when there is no more
    busy: false, // a live poll is under way
  };

  // The filters as query parameters; since is counted back from now.
  function filters() {
    const query = new URLSearchParams();
    if ($("activity-instance").value) query.set("instance", $("activity-instance").value);
    if ($("activity-status").value) query.set("status", $("activity-status").value);
    const back = Number($("activity-since").value);
    if (back > 0) query.set("since", String(Math.floor(Date.now() / 1000 - back)));
    return query;
  }

  function filtered() {
    return Boolean($("activity-instance").value || $("activity-status").value || Number($("activity-since").value));
  }

  async function read(extra) {
    const query = filters();
    query.set("limit", String(PAGE_SIZE));
    for (const [name, value] of Object.entries(extra)) query.set(name, String(value));
    return api("GET", "activity?" + query.toString());
  }

  // #/activity/<name> opens it with that instance chosen.
  function openActivity(args) {
    showView("activity");
    const wanted = args.join("/");
    if (wanted) {
      const select = $("activity-instance");
      if (![...select.options].some((option) => option.value === wanted)) {
        select.append(el("option", { value: wanted, text: wanted }));
      }
      select.value = wanted;
    }
    fillInstanceFilter();
    reload();
    log.timer = setInterval(poll, LIVE_MS);
  }

  function leaveActivity() {
    if (log.timer !== null) clearInterval(log.timer);
    log.timer = null;
    log.generation += 1;
  }

  function forgetActivity() {
    $("activity-body").replaceChildren();
    log.newest = null;
    log.older = null;
  }

  // The instance filter offers every instance (the one chosen stays, even if deleted).
  async function fillInstanceFilter() {
    let instances;
    try {
      instances = await api("GET", "instances");
    } catch (err) {
      return;
    }
    const select = $("activity-instance");
    const chosen = select.value;
    const names = instances.map((inst) => inst.name);
    if (chosen && !names.includes(chosen)) names.push(chosen);
    select.replaceChildren(
      el("option", { value: "", text: "all instances" }),
      ...names.map((name) => el("option", { value: name, text: name })),
    );
    select.value = chosen;
  }

  // The newest page for the filters, replacing what is shown.
  async function reload() {
    const generation = ++log.generation;
    let answer;
    try {
      answer = await read({});
    } catch (err) {
      if (generation === log.generation) failed(err);
      return;
    }
    if (generation !== log.generation || state.view !== "activity") return;
    $("activity-body").replaceChildren(...answer.items.map(activityRow));
    log.newest = answer.items.length ? answer.items[0].id : null;
    log.older = answer.next_before;
    shown();
  }

  // Rows newer than the newest shown go on top; a full page means there may be a gap
  // below them, so the list is read again from the top.
  async function poll() {
    if (document.visibilityState !== "visible" || log.busy || state.view !== "activity") return;
    const generation = log.generation;
    log.busy = true;
    let answer;
    try {
      answer = await read(log.newest === null ? {} : { after: log.newest });
    } catch (err) {
      if (generation === log.generation) failed(err);
      return;
    } finally {
      log.busy = false;
    }
    if (generation !== log.generation || state.view !== "activity") return;
    if (answer.items.length >= PAGE_SIZE && log.newest !== null) {
      reload();
      return;
    }
    const body = $("activity-body");
    const fresh = answer.items.filter((item) => !body.querySelector('tr[data-id="' + item.id + '"]'));
    body.prepend(...fresh.map(activityRow));
    if (fresh.length) log.newest = Math.max(log.newest ?? 0, ...fresh.map((item) => item.id));
    if (log.newest === null) log.older = answer.next_before;
    shown();
  }

  async function loadOlder() {
    if (log.older === null) return;
    const generation = log.generation;
    const button = $("activity-older");
    button.disabled = true;
    try {
      const answer = await read({ before: log.older });
      if (generation !== log.generation) return;
      $("activity-body").append(...answer.items.map(activityRow));
      log.older = answer.next_before;
      shown();
    } catch (err) {
      failed(err);
    } finally {
      button.disabled = false;
    }
  }

  function failed(err) {
    if (err.status === 401) return;
    const missing = err.status === 404 && /no route|not found/i.test(err.message);
    setText($("activity-updated"), missing
      ? "This server keeps no activity log (it has no activity endpoint)."
      : "Not updated: " + err.message);
  }

  function shown() {
    const count = $("activity-body").children.length;
    $("activity-empty").hidden = count > 0;
    setText($("activity-empty"), filtered()
      ? "No request matches these filters."
      : "No requests yet. Requests to /v1 show up here as they are made.");
    $("activity-older").hidden = log.older === null;
    setText($("activity-updated"), "Live · updated " + new Date().toLocaleTimeString());
  }

  function cell(cls, label, text, title) {
    return el("td", { class: cls, "data-label": label, title }, text);
  }

  // One request (tr[data-id]), each cell as text.
  function activityRow(item) {
    const status = el("span", { class: "badge code " + statusClass(item.status), text: String(item.status) });
    const instance = item.instance === null
      ? el("span", { class: "muted", text: "none", title: "No instance matched the request." })
      : el("a", { href: "#/charts/" + enc(item.instance), text: item.instance, title: "Charts of " + item.instance });
    const key = item.key_name || (typeof item.key_id === "number" ? "#" + item.key_id : "—");
    return el(
      "tr", { "data-id": String(item.id), class: item.status >= 400 ? "failed" : null },
      cell("col-time mono", "Time", when(item.time), new Date(item.time * 1000).toString()),
      el("td", { class: "col-instance", "data-label": "Instance" }, instance),
      el("td", { class: "col-route", "data-label": "Route" }, el("span", { class: "mono", text: item.route }),
        item.streamed ? el("span", { class: "muted small", text: " stream" }) : null),
      el("td", { class: "col-code", "data-label": "Status" }, status),
      cell("col-duration right", "Duration", duration(item.duration)),
      cell("col-ttfb right", "TTFB", duration(item.ttfb), "Time to the first byte of the answer"),
      cell("col-wait right", "Queue wait", duration(item.queue_wait), "Waiting for the instance (to start, or for room)"),
      el("td", { class: "col-cold", "data-label": "Cold start" },
        item.cold_start ? el("span", { class: "badge cold", text: "cold", title: "This request started the instance" }) : null),
      cell("col-tokens right", "Tokens in / out", tokens(item)),
      cell("col-rate right", "Tokens/s", rate(item.tokens_per_second)),
      cell("col-key", "Key", key),
    );
  }

  for (const id of ["activity-instance", "activity-status", "activity-since"]) {
    $(id).addEventListener("change", reload);
  }
  $("activity-older").addEventListener("click", loadOlder);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && log.timer !== null) poll();
  });

  registerPage("activity", { open: openActivity, leave: leaveActivity, forget: forgetActivity });

  // -- an instance's charts ---------------------------------------------------------------

  const chart = window.llamactlChart;
  const charts = { name: null, timer: null, generation: 0, points: [], step: 60, span: [0, 0] };
  // The period shown (seconds back from now) and the bucket for it: about 60 buckets.
  const STEPS = { 3600: 60, 21600: 300, 86400: 1800, 604800: 10800 };

  function openCharts(args) {
    const name = args.join("/");
    if (!name) {
      location.hash = "#/instances";
      return;
    }
    showView("charts", "instances");
    if (charts.name !== name) {
      charts.points = [];
      $("charts-body").replaceChildren();
    }
    charts.name = name;
    setText($("charts-name"), name);
    $("charts-chat").href = "#/chat/" + enc(name);
    $("charts-log").href = "#/activity/" + enc(name);
    refreshCharts();
    charts.timer = setInterval(refreshCharts, CHARTS_MS);
  }

  function leaveCharts() {
    if (charts.timer !== null) clearInterval(charts.timer);
    charts.timer = null;
    charts.generation += 1;
  }

  function forgetCharts() {
    charts.name = null;
    charts.points = [];
    $("charts-body").replaceChildren();
  }

  async function refreshCharts() {
    const generation = ++charts.generation;
    const period = Number($("charts-period").value);
    const step = STEPS[period] || 60;
    const since = Math.floor(Date.now() / 1000 - period);
    let answer;
    try {
      answer = await api("GET", "activity/series?instance=" + enc(charts.name) + "&since=" + since + "&step=" + step);
    } catch (err) {
      if (generation === charts.generation && err.status !== 401) {
        setText($("charts-updated"), "Not updated: " + err.message);
      }
      return;
    }
    if (generation !== charts.generation || state.view !== "charts") return;
    charts.points = answer.points || [];
    charts.step = answer.step || step;
    charts.span = [Math.floor(since / charts.step) * charts.step, Date.now() / 1000];
    renderCharts();
    setText($("charts-updated"), "Updated " + new Date().toLocaleTimeString());
  }

  const seconds = (value) => (value >= 1 || value === 0 ? String(Math.round(value * 100) / 100) + " s" : Math.round(value * 1000) + " ms");
  const count = (value) => String(Math.round(value * 10) / 10);

  // Each chart: a title, its series from the points, and what to say when it has none.
  const CHARTS = [
    {
      id: "requests", title: "Requests", empty: "No requests in this period.", format: count,
      series: [
        { name: "requests", kind: "bar", cls: "s-requests", value: (p) => p.requests },
        { name: "errors", kind: "bar", cls: "s-errors", value: (p) => p.errors },
      ],
    },
    {
      id: "ttfb", title: "Time to first byte", empty: "No answers in this period.", format: seconds,
      series: [
        { name: "p50", kind: "line", cls: "s-p50", value: (p) => p.ttfb_p50 },
        { name: "p95", kind: "line", cls: "s-p95", value: (p) => p.ttfb_p95 },
      ],
    },
    {
      id: "rate", title: "Tokens per second", empty: "No token counts in this period.", format: count,
      series: [{ name: "tokens/s", kind: "line", cls: "s-rate", value: (p) => p.tokens_per_second }],
    },
    {
      id: "load", title: "Load times (cold starts)", empty: "No cold starts in this period.", format: seconds,
      series: [{ name: "load", kind: "bar", cls: "s-load", value: (p) => (p.cold_starts > 0 ? p.load_seconds : null) }],
    },
  ];

  function renderCharts() {
    const points = charts.points;
    const times = points.map((p) => p.time);
    const period = $("charts-period").selectedOptions[0].textContent;
    $("charts-empty").hidden = points.length > 0;
    setText($("charts-empty"), "No requests to " + charts.name + " in the " + period + ".");
    const cards = CHARTS.map((spec) => {
      const series = spec.series.map((s) => ({ ...s, values: points.map((p) => (typeof s.value(p) === "number" ? s.value(p) : null)) }));
      const any = series.some((s) => s.values.some((v) => v !== null));
      const card = el("div", { class: "card chart-card", "data-chart": spec.id }, el("h2", { text: spec.title }));
      if (!any) {
        card.append(el("p", { class: "chart-empty muted", text: spec.empty }));
        return card;
      }
      const box = el("div", { class: "chart-box" });
      card.append(box, chart.legend(series));
      card.spec = {
        times, step: charts.step, series, format: spec.format, label: spec.title + " of " + charts.name,
        start: charts.span[0], end: charts.span[1],
      };
      return card;
    });
    $("charts-body").replaceChildren(...cards);
    drawCharts();
  }

  // Drawn at the width each box has now (and again when the window is resized).
  function drawCharts() {
    for (const card of $("charts-body").querySelectorAll(".chart-card")) {
      if (!card.spec) continue;
      const box = card.querySelector(".chart-box");
      box.replaceChildren(chart.draw({ ...card.spec, width: box.clientWidth }));
    }
  }

  $("charts-period").addEventListener("change", refreshCharts);
  $("charts-refresh").addEventListener("click", refreshCharts);
  window.addEventListener("resize", () => {
    if (state.view === "charts") drawCharts();
  });

  registerPage("charts", { open: openCharts, leave: leaveCharts, forget: forgetCharts });
})();
