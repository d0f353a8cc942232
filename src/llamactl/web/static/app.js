// The llamactl dashboard: plain JavaScript over the management API.
// Every URL is relative (no leading slash), so the page works under any sub-path.
"use strict";

(function () {
  const KEY_STORAGE = "llamactl-key";
  const THEME_STORAGE = "llamactl-theme";
  const POLL_MS = 2000;
  const TOAST_MS = 4000;
  const MAX_LOG_CHARS = 2000000;
  const COMMON_FIELDS = [
    "auto_restart", "max_restarts", "restart_delay", "on_demand_start",
    "loading_progress", "idle_timeout", "docker_enabled", "command_override",
  ];

  const CATALOG = JSON.parse(document.getElementById("backend-catalog").textContent);
  const BACKENDS = {};
  for (const backend of CATALOG) {
    backend.kinds = {};
    for (const [name, kind] of backend.fields) backend.kinds[name] = kind;
    BACKENDS[backend.type] = backend;
  }

  const $ = (id) => document.getElementById(id);
  const state = {
    view: null,
    config: null,
    pollTimer: null,
    editing: null, // the name of the instance being edited, or null when creating
    logsName: null,
    follow: null, // the AbortController of the log follow request
    offline: false, // the last call could not reach the server
    lastUpdate: null, // when the list last came from the server
    openMenu: null, // the row-actions element whose menu is open
    editingActive: false, // the instance being edited is running: saving restarts it
    route: 0, // counts routings, so a view that finishes loading late knows it was left
    nodes: null, // the last GET nodes: each configured node by name, with its health
    instances: [], // the last instance list, as the server gave it
    nodeFilter: "", // the node whose instances the list shows, or "" for all
    keyEditing: null, // the stored key being edited (as the server gave it), or null when making one
  };

  // -- small helpers ----------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  function showMessage(text, kind) {
    $("message-text").textContent = text;
    $("message").className = "message " + (kind || "error");
    $("message").hidden = false;
  }

  function clearMessage() {
    $("message").hidden = true;
    $("message-text").textContent = "";
  }

  // A short confirmation in the corner, gone after a few seconds (or when clicked).
  function toast(text) {
    const node = el("div", { class: "toast", text });
    const remove = () => node.remove();
    node.addEventListener("click", remove);
    $("toasts").append(node);
    setTimeout(remove, TOAST_MS);
  }

  // While the server cannot be reached: a banner, and the instance list greyed out.
  function setOffline(offline, reason) {
    if (offline) {
      const since = state.lastUpdate ? " The list was last updated at " + state.lastUpdate.toLocaleTimeString() + "." : "";
      $("offline-detail").textContent = (reason ? reason + "." : "") + since + " The page keeps trying.";
    }
    if (state.offline === offline) return;
    state.offline = offline;
    document.body.classList.toggle("offline", offline);
    $("offline-banner").hidden = !offline;
    if (offline) closeMenu();
  }

  function download(filename, text, type) {
    const blob = new Blob([text], { type: type || "text/plain" });
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function ago(seconds) {
    if (seconds < 60) return Math.max(0, Math.round(seconds)) + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }

  // Time since the last request ended (idle_seconds), or "now" while there are requests
  // (the status column says how many).
  function lastRequest(inst) {
    if (inst.in_flight > 0) return "now";
    if (typeof inst.idle_seconds === "number") return ago(inst.idle_seconds);
    return "—";
  }

  // The requests at an instance now, for its status cell: those it answers and those
  // waiting for it to become ready ("starting, 3 waiting" while none is answered yet);
  // "" when there are none. in_flight counts the waiting ones too.
  function queueText(inst) {
    const queued = inst.queued || 0;
    const answering = Math.max(0, (inst.in_flight || 0) - queued);
    const parts = [];
    if (answering > 0) parts.push(answering + " in flight");
    if (queued > 0) parts.push(answering === 0 && inst.readiness !== "ready" ? "starting, " + queued + " waiting" : queued + " waiting");
    return parts.join(" · ");
  }

  // -- the API ----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function key() {
    try { return sessionStorage.getItem(KEY_STORAGE); } catch (e) { return null; }
  }

  async function errorFrom(response) {
    let code = "http_" + response.status;
    let message = response.status + " " + (response.statusText || "error");
    const text = await response.text().catch(() => "");
    try {
      const body = JSON.parse(text);
      if (body && body.error) {
        if (body.error.message) message = body.error.message;
        if (body.error.code !== undefined && body.error.code !== null) code = String(body.error.code);
      } else if (body && typeof body.detail === "string") {
        message = body.detail;
      }
    } catch (e) {
      if (text.trim()) message = text.trim().slice(0, 500);
    }
    return new ApiError(response.status, code, message);
  }

  // Calls api/v1/<path>; JSON bodies in and out, text with {text: true}.
  async function api(method, path, options) {
    const opts = options || {};
    const headers = { Authorization: "Bearer " + (opts.key ?? key() ?? "") };
    const init = { method, headers, signal: opts.signal, cache: "no-store" };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    let response;
    try {
      response = await fetch("api/v1/" + path, init);
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      setOffline(true, "No answer from " + location.host);
      throw new ApiError(0, "network", "Cannot reach the llamactl server: " + err.message);
    }
    // A proxy in front of a stopped llamactl answers 502-504 without llamactl's error body.
    const gateway = [502, 503, 504].includes(response.status)
      && !(response.headers.get("content-type") || "").includes("json");
    setOffline(gateway, gateway ? "The proxy in front of it answered " + response.status : null);
    if (!response.ok) {
      const error = await errorFrom(response);
      if (response.status === 401 && !opts.key) loggedOut("Your key is no longer accepted: log in again.");
      throw error;
    }
    if (opts.raw) return response;
    if (response.status === 204) return null;
    return opts.text ? response.text() : response.json();
  }

  const enc = encodeURIComponent;

  // -- theme ------------------------------------------------------------------------------

  function applyTheme(theme) {
    document.documentElement.dataset.theme = theme;
    $("theme-toggle").textContent = theme === "dark" ? "Light theme" : "Dark theme";
  }

  $("theme-toggle").addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    try { localStorage.setItem(THEME_STORAGE, next); } catch (e) { /* storage off */ }
    applyTheme(next);
  });

  // -- login ------------------------------------------------------------------------------

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const candidate = $("login-key").value.trim();
    const error = $("login-error");
    error.hidden = true;
    if (!candidate) {
      error.textContent = "Enter a management key.";
      error.hidden = false;
      return;
    }
    $("login-submit").disabled = true;
    try {
      await api("GET", "instances", { key: candidate });
      sessionStorage.setItem(KEY_STORAGE, candidate);
      $("login-key").value = "";
      clearMessage();
      if (!location.hash || location.hash === "#/login") location.hash = "#/instances";
      else route();
    } catch (err) {
      error.textContent = err.status === 401 || err.status === 403
        ? "That key was refused by the server."
        : err.message;
      error.hidden = false;
    } finally {
      $("login-submit").disabled = false;
    }
  });

  function loggedOut(message) {
    try { sessionStorage.removeItem(KEY_STORAGE); } catch (e) { /* storage off */ }
    stopPolling();
    stopFollow();
    state.config = null;
    state.nodes = null;
    state.instances = [];
    state.nodeFilter = "";
    $("instances-body").replaceChildren();
    $("nodes-body").replaceChildren();
    $("keys-body").replaceChildren();
    state.keyEditing = null;
    for (const page of Object.values(pages)) {
      page.leave();
      page.forget();
    }
    showView("login");
    if (message) showMessage(message, "info");
  }

  $("logout").addEventListener("click", () => {
    loggedOut(null);
    clearMessage();
    location.hash = "#/login";
  });

  $("message-close").addEventListener("click", clearMessage);

  // -- views and routing ------------------------------------------------------------------

  // Views kept in files of their own (activity.js, playground.js) register here: open(args)
  // is called with the hash's parts after the page's name, leave() whenever any view is
  // routed to (it stops what the view runs), forget() at log-out (it drops what it shows).
  const pages = {};

  function registerPage(name, page) {
    pages[name] = page;
  }

  // ``nav`` is the nav item to highlight when it is not the view's own (editing and logs
  // belong to Instances, not to "New instance").
  function showView(name, nav) {
    for (const section of document.querySelectorAll(".view")) {
      section.hidden = section.id !== "view-" + name;
    }
    const loggedIn = name !== "login";
    $("nav").hidden = !loggedIn;
    $("logout").hidden = !loggedIn;
    const current = nav || name;
    for (const link of document.querySelectorAll("#nav a")) {
      const active = link.dataset.view === current;
      link.classList.toggle("active", active);
      if (active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    closeMenu();
    state.view = name;
  }

  function route() {
    state.route += 1;
    if (!key()) {
      showView("login");
      $("login-key").focus();
      return;
    }
    const hash = location.hash.replace(/^#\/?/, "");
    const [page, ...rest] = hash.split("/");
    const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
    if (page !== "logs") stopFollow();
    stopPolling();
    for (const other of Object.values(pages)) other.leave();
    if (pages[page]) pages[page].open(rest.map((part) => decodeURIComponent(part)));
    else if (page === "new") openForm(null);
    else if (page === "edit" && arg) openForm(arg);
    else if (page === "logs" && arg) openLogs(arg);
    else if (page === "nodes") openNodes();
    else if (page === "keys" && rest[0] === "new") openKeyForm(null);
    else if (page === "keys" && rest[0] === "edit" && /^\d+$/.test(rest[1] || "")) openKeyForm(rest[1]);
    else if (page === "keys") openKeys();
    else if (page === "system") openSystem();
    else openInstances();
  }

  window.addEventListener("hashchange", () => {
    clearMessage();
    route();
  });

  // -- instance list ----------------------------------------------------------------------

  function openInstances() {
    showView("instances");
    refreshInstances();
    startPolling(refreshInstances);
  }

  // The shown list (instances or nodes) is refreshed every POLL_MS until another view opens.
  function startPolling(refresh) {
    stopPolling();
    state.pollTimer = setInterval(refresh, POLL_MS);
  }

  function stopPolling() {
    if (state.pollTimer !== null) clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  // The list views (instances, nodes) each take both the instances and the nodes from the
  // server; ``render`` runs only if the view that asked is still shown. A failed refresh
  // leaves what is shown and says since when it is not updated.
  async function refreshLists(view, updatedId, render) {
    let instances;
    let nodes;
    try {
      [instances, nodes] = await Promise.all([api("GET", "instances"), api("GET", "nodes")]);
    } catch (err) {
      if (err.status === 0 && state.lastUpdate) {
        $(updatedId).textContent = "Not updated since " + state.lastUpdate.toLocaleTimeString();
      } else if (err.status !== 401) {
        $(updatedId).textContent = "Not updated: " + err.message;
      }
      return;
    }
    state.instances = instances;
    state.nodes = nodes;
    if (state.view !== view) return;
    render();
    state.lastUpdate = new Date();
    $(updatedId).textContent = "Updated " + state.lastUpdate.toLocaleTimeString();
  }

  const refreshInstances = () => refreshLists("instances", "list-updated", showInstances);

  // -- nodes, and where each instance lives -----------------------------------------------

  // Every configured node's name, this one first.
  function nodeNames() {
    const nodes = state.nodes || {};
    const names = Object.keys(nodes).sort();
    return names.filter((name) => nodes[name].local).concat(names.filter((name) => !nodes[name].local));
  }

  function localNode() {
    return nodeNames().find((name) => state.nodes[name].local) || null;
  }

  // Nodes appear in the list and the form only once there is more than this one.
  function hasNodes() {
    return nodeNames().length > 1;
  }

  function nodeLabel(name) {
    const node = (state.nodes || {})[name];
    if (!node) return name;
    if (node.local) return name + " (this node)";
    return node.status === "healthy" ? name : name + " (" + node.status + ")";
  }

  // The nodes an instance is defined on, its own first, each with how that node is:
  // every copy when it has copies on other nodes, else the one node it lives on.
  function placesOf(inst) {
    const places = (Array.isArray(inst.copies) ? inst.copies : []).map((copy) => ({
      node: copy.node, nodeStatus: copy.node_status, status: copy.status, defined: copy.defined !== false,
    }));
    if (!places.some((where) => where.node === inst.node)) {
      places.unshift({ node: inst.node, nodeStatus: inst.node_status || "healthy", status: inst.status, defined: true });
    }
    return places.sort((a, b) => (b.node === inst.node) - (a.node === inst.node));
  }

  // A node that does not answer (or refuses the key) marks what is shown of it as its
  // last known state; a node that says it has no such instance, as missing there.
  // Its text is also its class: node-unreachable, node-unauthorized, node-unknown, node-missing.
  function placeMarker(where) {
    if (!where.defined) return { text: "missing", title: where.node + " has no such instance." };
    if (where.nodeStatus === "healthy") return null;
    const node = (state.nodes || {})[where.node];
    const error = node && node.error ? " (" + node.error + ")" : "";
    const title = where.node + " is " + where.nodeStatus + error + ": what is shown is the last it reported.";
    return { text: where.nodeStatus, title };
  }

  function markerBadge(marker) {
    return el("span", { class: "badge node-marker node-" + marker.text, text: marker.text, title: marker.title });
  }

  function placeNodes(cell, inst) {
    const places = placesOf(inst).map((where) => ({ node: where.node, marker: placeMarker(where) }));
    const key = JSON.stringify(places);
    if (cell.dataset.key === key) return;
    cell.dataset.key = key;
    cell.replaceChildren(...places.map((where) => el(
      "span", { class: "place", "data-node": where.node },
      el("span", { class: "node-name", text: where.node }),
      where.marker ? markerBadge(where.marker) : null,
    )));
  }

  function matchesFilter(inst) {
    return !state.nodeFilter || placesOf(inst).some((where) => where.node === state.nodeFilter);
  }

  // All nodes, or one: offered only when there are other nodes than this one.
  function renderNodeFilter() {
    const select = $("node-filter");
    const names = nodeNames();
    if (state.nodeFilter && !names.includes(state.nodeFilter)) state.nodeFilter = "";
    const options = [["", "all nodes"], ...names.map((name) => [name, nodeLabel(name)])];
    const key = JSON.stringify(options);
    if (select.dataset.key !== key) {
      select.dataset.key = key;
      select.replaceChildren(...options.map(([value, text]) => el("option", { value, text })));
    }
    select.value = state.nodeFilter;
    $("node-filter-label").hidden = !hasNodes();
  }

  $("node-filter").addEventListener("change", () => {
    state.nodeFilter = $("node-filter").value;
    showInstances();
  });
  $("node-filter-all").addEventListener("click", () => {
    state.nodeFilter = "";
    showInstances();
  });

  function showInstances() {
    renderNodeFilter();
    $("instances-table").classList.toggle("one-node", !hasNodes());
    const shown = state.instances.filter(matchesFilter);
    renderInstances(shown);
    $("instances-empty").hidden = state.instances.length > 0;
    $("instances-none-on").hidden = state.instances.length === 0 || shown.length > 0;
    $("instances-none-on-node").textContent = state.nodeFilter;
  }

  // Each instance is a row (tr[data-name]), followed by its failure-detail row while
  // the last output lines are shown.
  function renderInstances(instances) {
    const body = $("instances-body");
    const rows = new Map();
    const details = new Map();
    for (const row of body.children) {
      if (row.dataset.name !== undefined) rows.set(row.dataset.name, row);
      else details.set(row.dataset.detailFor, row);
    }
    const seen = new Set();
    let previous = null;
    for (const inst of instances) {
      seen.add(inst.name);
      let row = rows.get(inst.name);
      if (!row) row = newRow(inst.name);
      updateRow(row, inst);
      previous = place(body, row, previous);
      const detail = details.get(inst.name);
      if (detail && updateDetail(detail, inst)) previous = place(body, detail, previous);
      else if (detail) closeDetail(row, detail);
    }
    for (const [name, row] of rows) if (!seen.has(name)) row.remove();
    for (const [name, detail] of details) if (!seen.has(name)) detail.remove();
    fitActions("instances-table");
  }

  function place(body, node, previous) {
    const expected = previous ? previous.nextSibling : body.firstChild;
    if (expected !== node) body.insertBefore(node, expected);
    return node;
  }

  function newRow(name) {
    const action = (label, cls, handler) =>
      el("button", { type: "button", class: "small " + cls, text: label, onclick: () => handler(name) });
    const actions = el(
      "div", { class: "row-actions", role: "group", "aria-label": "Actions for " + name },
      action("Start", "act-start", startInstance),
      action("Stop", "act-stop", stopInstance),
      action("Restart", "act-restart", restartInstance),
      el("a", { class: "button small act-logs", href: "#/logs/" + enc(name), text: "Logs" }),
      el("a", { class: "button small act-edit", href: "#/edit/" + enc(name), text: "Edit" }),
      action("Export", "act-export", exportInstance),
      action("Delete", "danger act-delete", deleteInstance),
    );
    const output = el("button", {
      type: "button", class: "small ghost act-output", text: "Last output", "aria-expanded": "false", hidden: true,
      onclick: () => toggleDetail(name),
    });
    return el(
      "tr", { "data-name": name },
      el("td", { class: "col-name" }, el("strong", { text: name, title: name }),
        el("span", { class: "name-links small" },
          el("a", { class: "act-chat", href: "#/chat/" + enc(name), text: "Chat", "aria-label": "Chat with " + name }),
          el("a", { class: "act-charts", href: "#/charts/" + enc(name), text: "Charts", "aria-label": "Charts of " + name }))),
      el("td", { class: "col-node", "data-label": "Node" }),
      el("td", { class: "col-backend", "data-label": "Backend" }),
      el("td", { class: "col-status", "data-label": "Status" },
        el("div", { class: "status-cell" }, el("span", { class: "badge" }),
          el("span", { class: "queue small", hidden: true }),
          el("span", { class: "held small", hidden: true }))),
      el("td", { class: "col-readiness", "data-label": "Readiness" }, el("span", { class: "badge" })),
      el("td", { class: "col-port mono", "data-label": "Port" }),
      el("td", { class: "col-failure", "data-label": "Failure" }, el("span", { class: "reason" }), output),
      el("td", { class: "col-last muted", "data-label": "Last request" }),
      el("td", { class: "col-actions right" }, menuToggle(actions), actions),
    );
  }

  // -- the actions menu (when a row's actions do not fit) ---------------------------------

  // The button that opens a row's actions as a menu (shown only while they are collapsed).
  function menuToggle(actions) {
    const toggle = el("button", {
      type: "button", class: "small act-menu", text: "Actions ▾",
      "aria-haspopup": "true", "aria-expanded": "false",
      onclick: (event) => {
        event.stopPropagation();
        if (state.openMenu === actions) closeMenu();
        else openMenu(toggle, actions);
      },
    });
    actions.addEventListener("click", () => closeMenu());
    return toggle;
  }

  // The actions of a list (instances, keys) collapse into a menu when they do not fit
  // beside the other columns (and always on a narrow screen, where every row is a card).
  // Measured with them inline.
  function fitActions(tableId) {
    const table = $(tableId);
    const wrap = table.parentElement;
    const cards = window.matchMedia("(max-width: 899px)").matches;
    // Measured and set in one go: the browser paints neither the inline state nor a
    // closed menu in between, so an open menu stays open across a refresh.
    table.classList.remove("compact");
    const compact = cards || wrap.scrollWidth > wrap.clientWidth + 1;
    table.classList.toggle("compact", compact);
    if (!compact) closeMenu();
  }

  function openMenu(toggle, actions) {
    closeMenu();
    actions.classList.add("open");
    toggle.setAttribute("aria-expanded", "true");
    state.openMenu = actions;
    placeMenu(toggle, actions);
    const first = actions.querySelector("button:not(:disabled), a");
    if (first) first.focus({ preventScroll: true });
  }

  // Fixed, so that the card's overflow does not clip it; kept inside the viewport.
  function placeMenu(toggle, actions) {
    const anchor = toggle.getBoundingClientRect();
    const size = actions.getBoundingClientRect();
    const margin = 8;
    const left = Math.max(margin, Math.min(anchor.right - size.width, window.innerWidth - size.width - margin));
    let top = anchor.bottom + 4;
    if (top + size.height > window.innerHeight - margin) top = Math.max(margin, anchor.top - size.height - 4);
    actions.style.left = left + "px";
    actions.style.top = top + "px";
  }

  // A scroll (the user's, or the browser keeping its place while a refresh changes the
  // layout) moves the menu with its button; it closes once the button is out of sight.
  function followScroll() {
    const actions = state.openMenu;
    if (!actions) return;
    const toggle = actions.parentElement.querySelector(".act-menu");
    const anchor = toggle ? toggle.getBoundingClientRect() : null;
    if (!anchor || anchor.bottom < 0 || anchor.top > window.innerHeight || anchor.width === 0) {
      closeMenu();
      return;
    }
    placeMenu(toggle, actions);
  }

  function closeMenu() {
    const actions = state.openMenu;
    if (!actions) return;
    state.openMenu = null;
    actions.classList.remove("open");
    const toggle = actions.parentElement.querySelector(".act-menu");
    if (toggle) toggle.setAttribute("aria-expanded", "false");
  }

  document.addEventListener("click", (event) => {
    if (state.openMenu && !state.openMenu.contains(event.target)) closeMenu();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.openMenu) {
      const toggle = state.openMenu.parentElement.querySelector(".act-menu");
      closeMenu();
      if (toggle) toggle.focus();
    }
  });
  window.addEventListener("scroll", followScroll, { passive: true });
  window.addEventListener("resize", () => {
    if (state.view === "instances") fitActions("instances-table");
    else if (state.view === "keys") fitActions("keys-table");
  });

  // -- the last output lines of a failure -------------------------------------------------

  function toggleDetail(name) {
    const body = $("instances-body");
    const row = body.querySelector('tr[data-name="' + CSS.escape(name) + '"]');
    const existing = body.querySelector('tr[data-detail-for="' + CSS.escape(name) + '"]');
    if (existing) {
      closeDetail(row, existing);
      return;
    }
    const detail = el(
      "tr", { class: "failure-detail", "data-detail-for": name },
      el("td", { colspan: "9" }, el("pre", { class: "plain failure-output", "aria-label": "Last output of " + name })),
    );
    detail.lines = row.lines || [];
    updateDetail(detail, { failure: { last_lines: detail.lines } });
    row.after(detail);
    const button = row.querySelector(".act-output");
    button.textContent = "Hide output";
    button.setAttribute("aria-expanded", "true");
  }

  function closeDetail(row, detail) {
    detail.remove();
    const button = row.querySelector(".act-output");
    button.textContent = "Last output";
    button.setAttribute("aria-expanded", "false");
  }

  // Fill the detail row; false when there is nothing to show any more.
  function updateDetail(detail, inst) {
    const lines = inst.failure ? inst.failure.last_lines || [] : [];
    if (!lines.length) return false;
    setText(detail.querySelector("pre"), lines.join("\n"));
    return true;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function updateRow(row, inst) {
    const options = inst.options || {};
    const backendOptions = options.backend_options || {};
    const backend = BACKENDS[options.backend_type];
    placeNodes(row.querySelector(".col-node"), inst);
    // On a node that does not answer, the status shown is the last it reported.
    row.classList.toggle("stale", placeMarker(placesOf(inst)[0]) !== null);
    setText(row.querySelector(".col-backend"), backend ? backend.label.split(" (")[0] : String(options.backend_type));
    const status = row.querySelector(".col-status .badge");
    setText(status, inst.status);
    status.className = "badge status-" + inst.status;
    const queue = row.querySelector(".col-status .queue");
    setText(queue, queueText(inst));
    queue.hidden = queue.textContent === "";
    // Held: it finishes what it answers, then stops to make room for another instance.
    const held = row.querySelector(".col-status .held");
    setText(held, inst.held === true ? "held: finishing its requests to make room" : "");
    held.hidden = inst.held !== true;
    const readiness = row.querySelector(".col-readiness .badge");
    setText(readiness, inst.readiness || "—");
    readiness.className = "badge" + (inst.readiness ? " ready-" + inst.readiness : " none");
    setText(row.querySelector(".col-port"), backendOptions.port ? String(backendOptions.port) : "—");
    const failure = row.querySelector(".col-failure");
    const lines = inst.failure ? inst.failure.last_lines || [] : [];
    setText(failure.querySelector(".reason"), inst.failure ? inst.failure.reason : "—");
    failure.classList.toggle("failure", Boolean(inst.failure));
    failure.querySelector(".act-output").hidden = lines.length === 0;
    row.lines = lines;
    setText(row.querySelector(".col-last"), lastRequest(inst));
    const active = ["running", "restarting", "shutting_down"].includes(inst.status);
    row.querySelector(".act-start").disabled = active;
    row.querySelector(".act-stop").disabled = !active;
    row.querySelector(".act-restart").disabled = inst.status === "shutting_down";
    const remove = row.querySelector(".act-delete");
    remove.disabled = active;
    remove.title = active ? "Stop " + inst.name + " before deleting it: it is " + inst.status.replace("_", " ") + "." : "";
  }

  async function instanceAction(name, verb, done) {
    clearMessage();
    try {
      await api("POST", "instances/" + enc(name) + "/" + verb);
      if (done) toast(done);
    } catch (err) {
      showMessage("Could not " + verb + " " + name + ": " + err.message);
    }
    refreshInstances();
  }

  const startInstance = (name) => instanceAction(name, "start", "Started " + name + ".");
  const stopInstance = (name) => instanceAction(name, "stop", "Stopped " + name + ".");
  const restartInstance = (name) => instanceAction(name, "restart", "Restarted " + name + ".");

  async function deleteInstance(name) {
    if (!window.confirm("Delete the instance " + name + "? Its configuration is removed.")) return;
    clearMessage();
    try {
      await api("DELETE", "instances/" + enc(name));
      toast("Deleted " + name + ".");
    } catch (err) {
      showMessage("Could not delete " + name + ": " + err.message);
    }
    refreshInstances();
  }

  async function exportInstance(name) {
    clearMessage();
    try {
      const inst = await api("GET", "instances/" + enc(name));
      const exported = { name: inst.name, options: inst.options };
      download(name + ".json", JSON.stringify(exported, null, 2) + "\n", "application/json");
    } catch (err) {
      showMessage("Could not export " + name + ": " + err.message);
    }
  }

  // -- import -----------------------------------------------------------------------------

  $("show-import").addEventListener("click", () => {
    $("import-panel").hidden = !$("import-panel").hidden;
  });
  $("import-cancel").addEventListener("click", () => { $("import-panel").hidden = true; });
  $("import-file").addEventListener("change", async () => {
    const file = $("import-file").files[0];
    if (file) $("import-text").value = await file.text();
  });

  $("import-submit").addEventListener("click", async () => {
    clearMessage();
    let data;
    try {
      data = JSON.parse($("import-text").value);
    } catch (err) {
      showMessage("The JSON to import cannot be read: " + err.message);
      return;
    }
    if (!data || typeof data !== "object" || Array.isArray(data)) {
      showMessage("The JSON to import must be an object with name and options.");
      return;
    }
    const given = data.options && typeof data.options === "object" ? data.options : data;
    const options = { ...given };
    if (!$("import-keep-port").checked && options.backend_options && typeof options.backend_options === "object") {
      options.backend_options = { ...options.backend_options };
      delete options.backend_options.port;
    }
    const name = $("import-name").value.trim() || data.name;
    if (!name || typeof name !== "string") {
      showMessage("The JSON has no name: give one in the Name box.");
      return;
    }
    try {
      await api("POST", "instances/" + enc(name), { body: options });
      toast("Imported " + name + ".");
      $("import-text").value = "";
      $("import-name").value = "";
      $("import-file").value = "";
      $("import-panel").hidden = true;
    } catch (err) {
      showMessage("Could not import " + name + ": " + err.message);
    }
    refreshInstances();
  });

  // -- the create / edit form -------------------------------------------------------------

  function fieldId(backendType, name) {
    return "b-" + backendType + "-" + name;
  }

  function label(name) {
    return name.replace(/_/g, " ");
  }

  function fieldInput(backendType, name, kind) {
    const id = fieldId(backendType, name);
    const common = { id, "data-option": name, "data-kind": kind, spellcheck: "false" };
    if (kind === "bool") {
      // Three states: an explicit false is kept (it is passed on, unlike "not set").
      return el(
        "select", common,
        el("option", { value: "", text: "(not set)" }),
        el("option", { value: "true", text: "true" }),
        el("option", { value: "false", text: "false" }),
      );
    }
    if (kind === "list") {
      return el("textarea", { ...common, rows: "2", placeholder: "one value per line" });
    }
    if (kind === "int" || kind === "float") {
      return el("input", { ...common, type: "text", inputmode: kind === "int" ? "numeric" : "decimal" });
    }
    return el("input", { ...common, type: "text" });
  }

  // A backend option's field is keyed "backend_options.<name>", as the server's errors
  // name it, so that it never clashes with a field of the instance itself ("name").
  function optionKey(name) {
    return "backend_options." + name;
  }

  function fieldBlock(backend, name, kind) {
    const input = fieldInput(backend.type, name, kind);
    const key = optionKey(name);
    const error = el("p", { class: "field-error", "data-error-for": key, hidden: true });
    const caption = el("label", { for: input.id }, label(name));
    // Options that are not command-line flags (a custom backend's) show no flag.
    if (backend.flags) caption.append(" ", el("code", { class: "flag", text: "--" + name.replace(/_/g, "-") }));
    return el("div", { class: "field", "data-field": key }, caption, input, error);
  }

  // One block of inputs per backend, built once; switching backends only shows another
  // block, so what was typed for each backend stays.
  function buildBackendFields() {
    const container = $("backend-fields");
    for (const backend of CATALOG) {
      const top = el("div", { class: "grid three top-fields" });
      for (const name of backend.top) top.append(fieldBlock(backend, name, backend.kinds[name]));
      const others = backend.fields.filter(([name]) => !backend.top.includes(name));
      const list = el("div", { class: "grid three more-fields" });
      for (const [name, kind] of others) {
        const block = fieldBlock(backend, name, kind);
        block.hidden = true;
        list.append(block);
      }
      const search = el("input", {
        type: "search",
        class: "field-search",
        id: "search-" + backend.type,
        placeholder: "Search " + others.length + " more options (name or flag)",
        "aria-label": "Search more options",
        oninput: () => filterMore(backend.type),
      });
      const showAll = el("input", {
        type: "checkbox", id: "show-all-" + backend.type, onchange: () => filterMore(backend.type),
      });
      const more = el(
        "div", { class: "more" },
        el("div", { class: "search-row" }, search,
          el("label", { class: "inline" }, showAll, " show all")),
        el("p", { class: "muted small more-hint" }),
        list,
      );
      container.append(el("div", { class: "backend-block", "data-backend": backend.type, hidden: true }, top, more));
    }
  }

  function hasValue(input) {
    return input.type === "checkbox" ? input.checked : input.value.trim() !== "";
  }

  function filterMore(backendType) {
    const block = document.querySelector('.backend-block[data-backend="' + backendType + '"]');
    const query = block.querySelector(".field-search").value.trim().toLowerCase().replace(/^-+/, "");
    const needle = query.replace(/-/g, "_");
    const showAll = block.querySelector("#show-all-" + backendType).checked;
    let shown = 0;
    let total = 0;
    for (const field of block.querySelectorAll(".more-fields .field")) {
      total += 1;
      const input = field.querySelector("[data-option]");
      const name = input.dataset.option;
      const matches = needle !== "" && (name.includes(needle) || label(name).includes(query));
      const visible = showAll || matches || hasValue(input) || field.classList.contains("has-error");
      field.hidden = !visible;
      if (visible) shown += 1;
    }
    block.querySelector(".more-hint").textContent = needle || showAll
      ? shown + " of " + total + " options shown"
      : "Options that are set are shown; search to find the others.";
  }

  function currentBlock() {
    return document.querySelector('.backend-block[data-backend="' + $("f-backend").value + '"]');
  }

  function showBackend() {
    for (const block of document.querySelectorAll(".backend-block")) {
      block.hidden = block.dataset.backend !== $("f-backend").value;
    }
    filterMore($("f-backend").value);
    applyDockerDefault();
  }

  $("f-backend").addEventListener("change", showBackend);

  function kvRow(editor, keyText, valueText, placeholders) {
    const remove = el("button", { type: "button", class: "small ghost", text: "×", "aria-label": "Remove" });
    const row = el(
      "div", { class: "kv-row" },
      el("input", { type: "text", class: "kv-key", value: keyText || "", placeholder: placeholders[0], spellcheck: "false" }),
      el("input", { type: "text", class: "kv-value", value: valueText || "", placeholder: placeholders[1], spellcheck: "false" }),
      remove,
    );
    remove.addEventListener("click", () => row.remove());
    editor.append(row);
    return row;
  }

  const ENV_PLACEHOLDERS = ["NAME", "value"];
  const EXTRA_PLACEHOLDERS = ["flag (without --)", "value (empty for a switch)"];
  $("env-add").addEventListener("click", () => kvRow($("env-editor"), "", "", ENV_PLACEHOLDERS).querySelector("input").focus());
  $("extra-add").addEventListener("click", () => kvRow($("extra-editor"), "", "", EXTRA_PLACEHOLDERS).querySelector("input").focus());

  function readKv(editor) {
    const result = {};
    for (const row of editor.querySelectorAll(".kv-row")) {
      const name = row.querySelector(".kv-key").value.trim();
      if (name) result[name] = row.querySelector(".kv-value").value;
    }
    return result;
  }

  function fillKv(editor, map, placeholders) {
    editor.replaceChildren();
    for (const [name, value] of Object.entries(map || {})) kvRow(editor, name, String(value), placeholders);
  }

  function setInput(input, value) {
    const kind = input.dataset.kind;
    if (kind === "bool" && input.type === "checkbox") input.checked = value === true || value === "true";
    else if (kind === "bool") input.value = value === true || value === "true" ? "true" : value === false || value === "false" ? "false" : "";
    else if (kind === "list") input.value = Array.isArray(value) ? value.join("\n") : (value ?? "");
    else input.value = value === null || value === undefined ? "" : String(value);
  }

  // A number typed as a number is sent as one; anything else is sent as typed, so that
  // the server's message says what is wrong with it.
  function readInput(input) {
    const kind = input.dataset.kind;
    if (kind === "bool" && input.type === "checkbox") return input.checked ? true : undefined;
    if (kind === "bool") return input.value === "" ? undefined : input.value === "true";
    const text = input.value.trim();
    if (text === "") return undefined;
    if (kind === "list") return input.value.split("\n").map((v) => v.trim()).filter((v) => v !== "");
    if (kind === "int" && /^[-+]?\d+$/.test(text)) return Number(text);
    if (kind === "float" && text !== "" && Number.isFinite(Number(text))) return Number(text);
    return text;
  }

  function clearFormErrors() {
    $("form-error").hidden = true;
    for (const node of document.querySelectorAll("#instance-form .field-error")) {
      node.hidden = true;
      node.textContent = "";
    }
    for (const node of document.querySelectorAll("#instance-form .has-error")) node.classList.remove("has-error");
  }

  function fillBackendOptions(backendType, backendOptions) {
    const block = document.querySelector('.backend-block[data-backend="' + backendType + '"]');
    for (const input of block.querySelectorAll("[data-option]")) {
      setInput(input, backendOptions ? backendOptions[input.dataset.option] : undefined);
    }
    fillKv($("extra-editor"), backendOptions ? backendOptions.extra_args : null, EXTRA_PLACEHOLDERS);
    filterMore(backendType);
  }

  function configDefaults() {
    const instances = (state.config && state.config.instances) || {};
    return {
      auto_restart: instances.default_auto_restart ?? true,
      max_restarts: instances.default_max_restarts ?? 3,
      restart_delay: instances.default_restart_delay ?? 5,
      on_demand_start: instances.default_on_demand_start ?? true,
      idle_timeout: instances.default_idle_timeout ?? 0,
      loading_progress: null, // unset: instances.loading_progress decides
      command_override: "",
    };
  }

  // docker_enabled defaults to the backend's docker.enabled setting, for new instances.
  function applyDockerDefault() {
    if (state.editing !== null || !state.config || !state.config.backends) return;
    const backend = BACKENDS[$("f-backend").value];
    const settings = state.config.backends[backend.segment];
    $("c-docker_enabled").checked = Boolean(settings && settings.docker && settings.docker.enabled);
  }

  function fillCommon(values) {
    for (const name of COMMON_FIELDS) {
      const input = $("c-" + name);
      if (name in values) setInput(input, values[name]);
    }
  }

  // The nodes as they are now (their status shows in the form's choice); a server that
  // cannot say leaves the form without the choice, as with one node.
  async function loadNodes() {
    try {
      state.nodes = await api("GET", "nodes");
    } catch (err) {
      if (err.status === 0 || err.status === 401) throw err;
    }
  }

  // Where a new instance goes: this node (no nodes sent) or one other node. An edited
  // instance shows its nodes, which an edit keeps.
  function showNodeField(editing, inst) {
    const select = $("f-node");
    const field = select.closest(".field");
    const local = localNode();
    const stored = editing ? (inst && inst.options && inst.options.nodes) || [] : null;
    const elsewhere = stored !== null && stored.some((name) => name !== local);
    field.hidden = !hasNodes() && !elsewhere;
    $("identity-fields").className = field.hidden ? "grid two" : "grid three";
    $("f-node-note").hidden = stored === null;
    select.disabled = stored !== null;
    if (stored !== null) {
      const text = stored.length && elsewhere ? stored.join(", ") : nodeLabel(local || "this node");
      select.replaceChildren(el("option", { value: "", text }));
      return;
    }
    const others = nodeNames().filter((name) => name !== local);
    select.replaceChildren(
      el("option", { value: "", text: nodeLabel(local) }),
      ...others.map((name) => el("option", { value: name, text: nodeLabel(name) })),
    );
    select.value = "";
  }

  async function loadConfig() {
    if (state.config) return state.config;
    state.config = await api("GET", "config");
    return state.config;
  }

  // Saving the options of a running instance restarts it: the button says so.
  function setEditingActive(active) {
    state.editingActive = active;
    $("form-submit").textContent = state.editing === null ? "Create" : active ? "Save and restart" : "Save";
    $("form-restart-note").hidden = !active;
  }

  // Everything the form needs is fetched before it is shown, so nothing typed into it
  // is overwritten by defaults or the stored instance arriving late.
  async function openForm(name) {
    const route = state.route;
    state.editing = name;
    let failure = null;
    let inst = null;
    try {
      await Promise.all([loadConfig(), loadNodes()]);
      if (name) inst = await api("GET", "instances/" + enc(name));
    } catch (err) {
      failure = err;
    }
    if (route !== state.route) return; // another view was opened meanwhile
    resetForm(name);
    if (inst) fillFromInstance(inst);
    showNodeField(name !== null, inst);
    if (failure) showFormError(failure);
  }

  function resetForm(name) {
    showView("form", name ? "instances" : "form");
    clearFormErrors();
    setEditingActive(false);
    $("form-title").textContent = name ? "Edit " + name : "New instance";
    $("f-name").disabled = Boolean(name);
    $("f-name").value = name || "";
    $("command-text").value = "";
    $("import-command").open = !name;
    for (const block of document.querySelectorAll(".backend-block")) {
      fillBackendOptions(block.dataset.backend, null);
      block.querySelector(".field-search").value = "";
      block.querySelector('[id^="show-all-"]').checked = false;
    }
    fillKv($("env-editor"), null, ENV_PLACEHOLDERS);
    $("f-backend").value = CATALOG[0].type;
    fillCommon(configDefaults());
    $("c-docker_enabled").checked = false;
    showBackend();
  }

  function fillFromInstance(inst) {
    const options = inst.options || {};
    setEditingActive(["running", "restarting"].includes(inst.status));
    $("f-backend").value = options.backend_type;
    showBackend();
    fillBackendOptions(options.backend_type, options.backend_options || {});
    fillCommon({ ...configDefaults(), ...options, command_override: options.command_override || "" });
    fillKv($("env-editor"), options.environment, ENV_PLACEHOLDERS);
  }

  function formBody() {
    const backendType = $("f-backend").value;
    const backendOptions = {};
    for (const input of currentBlock().querySelectorAll("[data-option]")) {
      const value = readInput(input);
      if (value !== undefined) backendOptions[input.dataset.option] = value;
    }
    const extra = readKv($("extra-editor"));
    if (Object.keys(extra).length) backendOptions.extra_args = extra;
    const body = { backend_type: backendType, backend_options: backendOptions };
    for (const name of COMMON_FIELDS) {
      const input = $("c-" + name);
      if (input.dataset.kind === "bool" && input.type === "checkbox") body[name] = input.checked;
      else {
        const value = readInput(input);
        if (value !== undefined) body[name] = value;
      }
    }
    const environment = readKv($("env-editor"));
    if (Object.keys(environment).length) body.environment = environment;
    const node = $("f-node").value;
    if (state.editing === null && node) body.nodes = [node];
    return body;
  }

  // Show the server's message at the top of the form, and next to the field it names
  // ("backend_options.gpu_layers: expected an integer, got 'lots'").
  function showFormError(err) {
    const box = $("form-error");
    box.textContent = err.message;
    box.hidden = false;
    const target = errorField(err);
    box.dataset.errorField = target ? target.dataset.field : "";
    if (target) {
      const node = target.querySelector(".field-error");
      node.textContent = err.message;
      node.hidden = false;
      target.classList.add("has-error");
      if (target.closest(".more-fields")) target.hidden = false;
      const input = target.querySelector("input, select, textarea");
      if (input) input.focus();
    }
    box.scrollIntoView({ block: "nearest" });
  }

  // The field an error names: "backend_options.<option>: ..." is the option's field in
  // the shown backend's block (extra_args has its own editor); "<setting>: ..." is the
  // instance's own field, else (unprefixed) an option of that name.
  function errorField(err) {
    const form = $("instance-form");
    if (err.code === "invalid_instance_name" || /instance name/i.test(err.message)) {
      return form.querySelector('.field[data-field="name"]');
    }
    // "node gpu1: <its message>" is another node refusing the options; any other message
    // about a node ("not found", "cannot be reached") is about the choice of node.
    const relayed = /^node \S+: /.exec(err.message);
    if (!relayed && /^node \S+ /.test(err.message)) return form.querySelector('.field[data-field="nodes"]');
    const message = relayed ? err.message.slice(relayed[0].length) : err.message;
    const match = /^([A-Za-z0-9_.\-]+):\s/.exec(message);
    if (!match) return null;
    const path = match[1].split(".");
    const option = path[0] === "backend_options" ? path[1] : null;
    if (option === "extra_args") return form.querySelector('.field[data-field="extra_args"]');
    if (option) return currentBlock().querySelector('.field[data-field="' + optionKey(option) + '"]');
    if (path[0] === "backend_options") return null;
    const own = form.querySelector('.field[data-field="' + path[0] + '"]');
    if (own) return own;
    return currentBlock().querySelector('.field[data-field="' + optionKey(path[0]) + '"]');
  }

  // Correcting a field clears its error (and the summary at the top, if it was about it).
  function clearFieldError(event) {
    const field = event.target.closest(".field.has-error");
    if (!field) return;
    field.classList.remove("has-error");
    const node = field.querySelector(".field-error");
    node.hidden = true;
    node.textContent = "";
    if ($("form-error").dataset.errorField === field.dataset.field) $("form-error").hidden = true;
  }

  $("instance-form").addEventListener("input", clearFieldError);
  $("instance-form").addEventListener("change", clearFieldError);

  $("instance-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors();
    clearMessage();
    const editing = state.editing;
    const name = editing || $("f-name").value.trim();
    if (!name) {
      showFormError(new ApiError(400, "invalid_instance_name", "Give the instance a name."));
      return;
    }
    const body = formBody();
    const restarts = editing && state.editingActive;
    $("form-submit").disabled = true;
    try {
      await api(editing ? "PUT" : "POST", "instances/" + enc(name), { body });
      toast(editing ? "Saved " + name + (restarts ? " and restarted it." : ".") : "Created " + name + ".");
      location.hash = "#/instances";
    } catch (err) {
      showFormError(err);
    } finally {
      $("form-submit").disabled = false;
    }
  });

  function segmentFor(command) {
    const first = (command.trim().split(/\s+/)[0] || "").split("/").pop();
    if (/^llama-server/.test(first) || first === "llama-cpp") return "llama-cpp";
    if (/^mlx_lm/.test(first) || /mlx_lm\.server/.test(command)) return "mlx";
    if (first === "vllm" || /\bvllm\s+serve\b/.test(command)) return "vllm";
    return BACKENDS[$("f-backend").value].segment;
  }

  $("command-parse").addEventListener("click", async () => {
    const error = document.querySelector('[data-error-for="command"]');
    error.hidden = true;
    const command = $("command-text").value;
    if (!command.trim()) {
      error.textContent = "Paste a command line first.";
      error.hidden = false;
      return;
    }
    $("command-parse").disabled = true;
    try {
      const parsed = await api("POST", "backends/" + segmentFor(command) + "/parse-command", { body: { command } });
      $("f-backend").value = parsed.backend_type;
      showBackend();
      fillBackendOptions(parsed.backend_type, parsed.backend_options || {});
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      $("command-parse").disabled = false;
    }
  });

  // -- logs -------------------------------------------------------------------------------

  function logLines() {
    const value = parseInt($("logs-lines").value, 10);
    return Number.isFinite(value) && value >= 0 ? value : 200;
  }

  function setLogs(text) {
    $("log-output").textContent = text;
    $("log-output").scrollTop = $("log-output").scrollHeight;
  }

  function appendLog(text) {
    const output = $("log-output");
    const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 40;
    output.append(document.createTextNode(text));
    if (output.textContent.length > MAX_LOG_CHARS) {
      output.textContent = output.textContent.slice(-MAX_LOG_CHARS / 2);
    }
    if (atBottom) output.scrollTop = output.scrollHeight;
  }

  function setLogStatus(status, readiness) {
    const badge = $("logs-status");
    badge.textContent = status ? status + (readiness ? " · " + readiness : "") : "";
    badge.className = "badge status-" + (status || "none");
  }

  async function openLogs(name) {
    showView("logs", "instances");
    if (state.logsName !== name) {
      stopFollow();
      setLogs("");
    }
    state.logsName = name;
    $("logs-name").textContent = name;
    $("logs-state").textContent = "";
    try {
      const inst = await api("GET", "instances/" + enc(name));
      setLogStatus(inst.status, inst.readiness);
    } catch (err) {
      showMessage(err.message);
      return;
    }
    if (!state.follow) loadLogs();
  }

  async function loadLogs() {
    stopFollow();
    const name = state.logsName;
    try {
      const text = await api("GET", "instances/" + enc(name) + "/logs?lines=" + logLines(), { text: true });
      if (state.follow || state.logsName !== name) return; // a follow (or another log) began meanwhile
      setLogs(text);
      $("logs-state").textContent = "Last " + (logLines() || "all") + " lines at " + new Date().toLocaleTimeString();
    } catch (err) {
      showMessage("Could not read the logs of " + name + ": " + err.message);
    }
  }

  function stopFollow() {
    if (state.follow) state.follow.abort();
    state.follow = null;
    $("logs-follow").textContent = "Follow";
    $("logs-follow").setAttribute("aria-pressed", "false");
    $("logs-follow").classList.remove("active");
  }

  async function follow() {
    stopFollow();
    clearMessage();
    const name = state.logsName;
    const controller = new AbortController();
    state.follow = controller;
    $("logs-follow").textContent = "Stop following";
    $("logs-follow").setAttribute("aria-pressed", "true");
    $("logs-follow").classList.add("active");
    $("logs-state").textContent = "Connecting…";
    let response;
    try {
      response = await api("GET", "instances/" + enc(name) + "/logs/follow?lines=" + logLines(), {
        raw: true, signal: controller.signal,
      });
    } catch (err) {
      if (state.follow !== controller) return;
      stopFollow();
      $("logs-state").textContent = "";
      if (err.name === "AbortError") return;
      const missing = err.status === 404 && /no route/.test(err.message);
      showMessage(missing
        ? "This server cannot follow logs (it has no log-follow endpoint); use Show instead."
        : "Could not follow the logs of " + name + ": " + err.message);
      return;
    }
    setLogs("");
    $("logs-state").textContent = "Following";
    try {
      await readEvents(response, controller, (event, data) => {
        if (event === "log" && typeof data.text === "string") appendLog(data.text);
        else if (event === "status") setLogStatus(data.status, data.readiness);
      });
      if (state.follow === controller) {
        stopFollow();
        $("logs-state").textContent = "The server closed the stream.";
      }
    } catch (err) {
      if (state.follow === controller && err.name !== "AbortError") {
        stopFollow();
        $("logs-state").textContent = "Stream ended: " + err.message;
      }
    }
  }

  // Server-sent events read from a fetch body (EventSource cannot send the key): each
  // event's name and its data lines joined; comment lines (":") are skipped.
  async function readSse(response, controller, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    controller.signal.addEventListener("abort", () => reader.cancel().catch(() => {}));
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of chunk.split("\n")) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let content = colon < 0 ? "" : line.slice(colon + 1);
          if (content.startsWith(" ")) content = content.slice(1);
          if (field === "event") event = content;
          else if (field === "data") data.push(content);
        }
        if (data.length) onEvent(event, data.join("\n"));
      }
    }
  }

  // The log follow's events: JSON data, else the text as a line.
  function readEvents(response, controller, onEvent) {
    return readSse(response, controller, (event, data) => {
      let parsed;
      try { parsed = JSON.parse(data); } catch (e) { parsed = { text: data + "\n" }; }
      onEvent(event, parsed);
    });
  }

  $("logs-load").addEventListener("click", loadLogs);
  $("logs-lines").addEventListener("keydown", (event) => {
    if (event.key === "Enter") loadLogs();
  });
  $("logs-follow").addEventListener("click", () => {
    if (state.follow) {
      stopFollow();
      $("logs-state").textContent = "Stopped following";
    } else follow();
  });

  $("logs-copy").addEventListener("click", async () => {
    const text = $("log-output").textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      const area = el("textarea", { class: "offscreen" });
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    $("logs-state").textContent = "Copied " + text.split("\n").filter(Boolean).length + " lines";
  });

  $("logs-download").addEventListener("click", () => {
    download(state.logsName + "-logs.txt", $("log-output").textContent);
  });

  // -- the Nodes page ---------------------------------------------------------------------

  function openNodes() {
    showView("nodes");
    refreshNodes();
    startPolling(refreshNodes);
  }

  const refreshNodes = () => refreshLists("nodes", "nodes-updated", () => renderNodes(state.nodes, state.instances));

  // One row per node (tr[data-node]), this one first, updated in place.
  function renderNodes(nodes, instances) {
    const body = $("nodes-body");
    const rows = new Map();
    for (const row of body.children) rows.set(row.dataset.node, row);
    const runs = runsOn(instances);
    const names = nodeNames();
    let previous = null;
    for (const name of names) {
      const row = rows.get(name) || newNodeRow(name);
      updateNodeRow(row, nodes[name], runs.get(name) || []);
      previous = place(body, row, previous);
    }
    for (const [name, row] of rows) if (!names.includes(name)) row.remove();
  }

  // What runs where: each instance under every node it is defined on, with its status there.
  function runsOn(instances) {
    const runs = new Map();
    for (const inst of instances) {
      for (const where of placesOf(inst)) {
        if (!runs.has(where.node)) runs.set(where.node, []);
        runs.get(where.node).push({ name: inst.name, status: where.status, marker: placeMarker(where) });
      }
    }
    return runs;
  }

  function newNodeRow(name) {
    const check = el("button", {
      type: "button", class: "small act-check", text: "Check now", onclick: () => checkNode(name),
    });
    return el(
      "tr", { "data-node": name },
      el("td", { class: "col-name" }, el("strong", { text: name, title: name })),
      el("td", { class: "col-where", "data-label": "Where" },
        el("div", {}, el("span", { class: "where" }), el("span", { class: "address small" }))),
      el("td", { class: "col-status", "data-label": "Status" },
        el("div", {}, el("span", { class: "status-line" }, el("span", { class: "badge" }), check),
          el("span", { class: "node-error failure small" }),
          el("span", { class: "checked muted small" }))),
      el("td", { class: "col-latency right mono", "data-label": "Latency" }),
      el("td", { class: "col-version", "data-label": "Version" }),
      el("td", { class: "col-running right", "data-label": "Running" },
        el("div", {}, el("span", { class: "running" }), el("span", { class: "count muted small" }))),
      el("td", { class: "col-runs", "data-label": "What runs there" }, el("div", { class: "runs" })),
    );
  }

  function latency(ms) {
    if (typeof ms !== "number") return "—";
    return (ms < 10 ? ms.toFixed(1) : String(Math.round(ms))) + " ms";
  }

  function runningOf(node) {
    if (typeof node.running !== "number") return "—";
    const limit = node.max_running_instances;
    const max = typeof limit !== "number" ? "?" : limit < 0 ? "no limit" : String(limit);
    return node.running + " / " + max;
  }

  function updateNodeRow(row, node, runs) {
    const healthy = node.status === "healthy";
    row.classList.toggle("node-down", node.status === "unreachable" || node.status === "unauthorized");
    setText(row.querySelector(".col-where .where"), node.local ? "Local" : "Remote");
    const address = row.querySelector(".col-where .address");
    setText(address, node.local ? "this llamactl" : node.address);
    address.classList.toggle("mono", !node.local);
    address.classList.toggle("muted", Boolean(node.local));
    const badge = row.querySelector(".col-status .badge");
    setText(badge, node.status);
    badge.className = "badge node-" + node.status;
    const error = row.querySelector(".node-error");
    setText(error, healthy || !node.error ? "" : node.error);
    error.hidden = healthy || !node.error;
    const checked = row.querySelector(".checked");
    const seconds = typeof node.checked_at === "number" ? Date.now() / 1000 - node.checked_at : null;
    setText(checked, node.local || seconds === null ? "" : "checked " + ago(seconds));
    checked.hidden = node.local || seconds === null;
    // The round trip of the last check that got an answer: shown while the node answers.
    setText(row.querySelector(".col-latency"), node.local ? "—" : healthy ? latency(node.rtt_ms) : "—");
    setText(row.querySelector(".col-version"), node.version || "—");
    setText(row.querySelector(".col-running .running"), runningOf(node));
    const count = node.instances;
    setText(row.querySelector(".col-running .count"), typeof count !== "number" ? "" : count === 1 ? "of 1 instance" : "of " + count + " instances");
    const cell = row.querySelector(".col-runs .runs");
    const key = JSON.stringify(runs);
    if (cell.dataset.key !== key) {
      cell.dataset.key = key;
      const chips = runs.map((run) => el(
        "span", { class: "run", "data-instance": run.name },
        el("span", { class: "run-name", text: run.name }),
        el("span", { class: "badge status-" + run.status, text: run.status }),
        run.marker ? markerBadge(run.marker) : null,
      ));
      cell.replaceChildren(...(chips.length ? chips : [el("span", { class: "muted", text: "—" })]));
    }
    row.querySelector(".act-check").hidden = Boolean(node.local);
  }

  // GET nodes/<name> checks the node now, rather than at the next background check.
  async function checkNode(name) {
    const button = $("nodes-body").querySelector('tr[data-node="' + CSS.escape(name) + '"] .act-check');
    button.disabled = true;
    try {
      const node = await api("GET", "nodes/" + enc(name));
      state.nodes = { ...(state.nodes || {}), [name]: node };
      if (state.view === "nodes") renderNodes(state.nodes, state.instances);
      toast(name + " is " + node.status + ".");
    } catch (err) {
      if (err.status !== 401) showMessage("Could not check " + name + ": " + err.message);
    } finally {
      button.disabled = false;
    }
  }

  // -- the Keys page ----------------------------------------------------------------------

  // The levels of a per_instance key on one instance, as the API's two flags. A key that
  // may not start an instance makes no room for it either, so (false, true) reads as the
  // first level.
  const LEVELS = [
    { value: "running", label: "use running only", can_start: false, can_evict: false },
    { value: "start", label: "start on demand", can_start: true, can_evict: false },
    { value: "evict", label: "start and evict", can_start: true, can_evict: true },
  ];
  const NEW_LEVEL = "start"; // what a newly chosen instance gets

  function levelOf(permission) {
    if (!permission.can_start) return LEVELS[0];
    return permission.can_evict ? LEVELS[2] : LEVELS[1];
  }

  function levelByValue(value) {
    return LEVELS.find((level) => level.value === value) || LEVELS[1];
  }

  const pad = (number) => String(number).padStart(2, "0");

  // Unix seconds as a datetime-local value in local time ("" for none).
  function localInput(seconds) {
    if (typeof seconds !== "number") return "";
    const d = new Date(seconds * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate())
      + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  const localTime = (seconds) => localInput(seconds).replace("T", " ");

  // A datetime-local value (local time) as unix seconds; null when it is empty.
  function fromLocalInput(value) {
    if (!value) return null;
    const time = new Date(value).getTime();
    return Number.isFinite(time) ? Math.floor(time / 1000) : value;
  }

  // A limit as typed: empty is none (null), a whole number is sent as one, anything else
  // as typed, so that the server's message says what is wrong with it.
  function readLimit(input) {
    const text = input.value.trim();
    if (text === "") return null;
    return /^[-+]?\d+$/.test(text) ? Number(text) : text;
  }

  function openKeys() {
    showView("keys");
    refreshKeys();
    startPolling(refreshKeys);
  }

  // The list, like the others, every POLL_MS while it is shown: a key's use is written
  // by the server every few seconds, and shows up here the next time after that.
  async function refreshKeys() {
    let keys;
    try {
      keys = await api("GET", "auth/keys");
    } catch (err) {
      if (state.view !== "keys") return;
      if (err.status === 0 && state.lastUpdate) {
        $("keys-updated").textContent = "Not updated since " + state.lastUpdate.toLocaleTimeString();
      } else if (err.status !== 401) {
        $("keys-updated").textContent = "Not updated: " + err.message;
      }
      return;
    }
    if (state.view !== "keys") return;
    renderKeys(keys);
    state.lastUpdate = new Date();
    $("keys-updated").textContent = "Updated " + state.lastUpdate.toLocaleTimeString();
  }

  // One row per key (tr[data-key-id]), in the server's order, updated in place.
  function renderKeys(keys) {
    const body = $("keys-body");
    const rows = new Map();
    for (const row of body.children) rows.set(row.dataset.keyId, row);
    const seen = new Set();
    let previous = null;
    for (const stored of keys) {
      const id = String(stored.id);
      seen.add(id);
      const row = rows.get(id) || newKeyRow(id);
      updateKeyRow(row, stored);
      previous = place(body, row, previous);
    }
    for (const [id, row] of rows) if (!seen.has(id)) row.remove();
    $("keys-empty").hidden = keys.length > 0;
    fitActions("keys-table");
  }

  // The actions read the row's key as it was last shown (row.stored).
  function newKeyRow(id) {
    const row = el("tr", { "data-key-id": id });
    const actions = el(
      "div", { class: "row-actions", role: "group" },
      el("a", { class: "button small act-edit", href: "#/keys/edit/" + id, text: "Edit" }),
      el("button", { type: "button", class: "small act-toggle", onclick: () => toggleKey(row.stored) }),
      el("button", { type: "button", class: "small danger act-delete", text: "Delete", onclick: () => deleteKey(row.stored) }),
    );
    row.append(
      el("td", { class: "col-name" }, el("strong"), el("span", { class: "prefix mono small" })),
      el("td", { class: "col-access", "data-label": "Access" }),
      el("td", { class: "col-limits", "data-label": "Limits" }),
      el("td", { class: "col-expires", "data-label": "Expires" }),
      el("td", { class: "col-state", "data-label": "Status" }, el("span", { class: "badge" })),
      el("td", { class: "col-use", "data-label": "Use" },
        el("div", {}, el("span", { class: "requests" }), el("span", { class: "used muted small" }))),
      el("td", { class: "col-actions right" }, menuToggle(actions), actions),
    );
    return row;
  }

  function renderLimits(cell, stored) {
    const limits = [];
    if (typeof stored.max_concurrent === "number") limits.push(stored.max_concurrent + " at once");
    if (typeof stored.requests_per_minute === "number") limits.push(stored.requests_per_minute + " / min");
    const key = JSON.stringify(limits);
    if (cell.dataset.key === key) return;
    cell.dataset.key = key;
    if (!limits.length) cell.replaceChildren(el("span", { class: "muted", text: "none" }));
    else cell.replaceChildren(el("div", {}, ...limits.map((text) => el("span", { class: "limit", text }))));
  }

  // Whether the key is refused now, and why: disabled first, as the server says.
  function keyStatus(stored, now) {
    if (stored.disabled) return "disabled";
    if (typeof stored.expires_at === "number" && stored.expires_at <= now) return "expired";
    return "active";
  }

  function updateKeyRow(row, stored) {
    row.stored = stored;
    const now = Date.now() / 1000;
    const name = row.querySelector(".col-name strong");
    setText(name, stored.name);
    name.title = stored.name;
    setText(row.querySelector(".col-name .prefix"), stored.prefix + "…");
    renderAccess(row.querySelector(".col-access"), stored);
    renderLimits(row.querySelector(".col-limits"), stored);
    const status = keyStatus(stored, now);
    const expires = row.querySelector(".col-expires");
    setText(expires, typeof stored.expires_at === "number" ? localTime(stored.expires_at) : "never");
    expires.classList.toggle("failure", status === "expired");
    const badge = row.querySelector(".col-state .badge");
    setText(badge, status);
    badge.className = "badge key-" + status;
    row.classList.toggle("key-off", status !== "active");
    const requests = stored.requests;
    setText(row.querySelector(".col-use .requests"), requests === 1 ? "1 request" : requests + " requests");
    const used = row.querySelector(".col-use .used");
    const usedAt = stored.last_used_at;
    setText(used, typeof usedAt === "number" ? "last " + ago(now - usedAt) : "never used");
    used.title = typeof usedAt === "number" ? localTime(usedAt) : "";
    setText(row.querySelector(".act-toggle"), stored.disabled ? "Enable" : "Disable");
    row.querySelector(".row-actions").setAttribute("aria-label", "Actions for the key " + stored.name);
  }

  // All instances, or each chosen instance with its level (span.perm[data-instance]).
  function renderAccess(cell, stored) {
    const perInstance = stored.permission_mode === "per_instance";
    const permissions = perInstance
      ? stored.permissions.map((p) => [p.instance_name, levelOf(p)]).sort((a, b) => a[0].localeCompare(b[0]))
      : [];
    const key = JSON.stringify([stored.permission_mode, permissions.map(([name, level]) => [name, level.value])]);
    if (cell.dataset.key === key) return;
    cell.dataset.key = key;
    if (!perInstance) {
      cell.replaceChildren(el("span", { class: "all", text: "All instances" }));
      return;
    }
    // Deleting an instance deletes its permissions: a key may be left with none.
    if (!permissions.length) {
      cell.replaceChildren(el("span", { class: "muted", text: "no instance" }));
      return;
    }
    cell.replaceChildren(el("div", { class: "perms" }, ...permissions.map(([name, level]) => el(
      "span", { class: "perm", "data-instance": name },
      el("span", { class: "perm-name", text: name }),
      el("span", { class: "badge level-" + level.value, text: level.label }),
    ))));
  }

  async function toggleKey(stored) {
    clearMessage();
    const disabled = !stored.disabled;
    try {
      await api("PUT", "auth/keys/" + stored.id, { body: { disabled } });
      toast((disabled ? "Disabled " : "Enabled ") + stored.name + ".");
    } catch (err) {
      showMessage("Could not " + (disabled ? "disable " : "enable ") + stored.name + ": " + err.message);
    }
    refreshKeys();
  }

  async function deleteKey(stored) {
    const asked = "Delete the key " + stored.name + " (" + stored.prefix + "…)? "
      + "Whatever uses it is refused from then on.";
    if (!window.confirm(asked)) return;
    clearMessage();
    try {
      await api("DELETE", "auth/keys/" + stored.id);
      toast("Deleted the key " + stored.name + ".");
    } catch (err) {
      showMessage("Could not delete " + stored.name + ": " + err.message);
    }
    refreshKeys();
  }

  // -- the key form -----------------------------------------------------------------------

  // The instances and (when editing) the key are fetched before the form is shown, so
  // nothing typed into it is overwritten by an answer arriving late.
  async function openKeyForm(id) {
    const route = state.route;
    let failure = null;
    let instances = [];
    let stored = null;
    try {
      [instances, stored] = await Promise.all([
        api("GET", "instances"),
        id === null ? null : api("GET", "auth/keys/" + id),
      ]);
    } catch (err) {
      failure = err;
    }
    if (route !== state.route) return; // another view was opened meanwhile
    state.keyEditing = stored;
    resetKeyForm(stored, instances || []);
    if (failure) {
      showKeyFormError(failure, []);
      // A key that cannot be read is not offered for saving (that would make another).
      $("key-submit").disabled = id !== null;
    }
  }

  function resetKeyForm(stored, instances) {
    showView("key-form", "keys");
    clearKeyFormErrors();
    $("key-form-title").textContent = stored ? "Edit the key " + stored.name : "New key";
    $("key-submit").textContent = stored ? "Save" : "Create key";
    $("key-submit").disabled = false;
    $("k-name").value = stored ? stored.name : "";
    $("k-expires_at").value = stored ? localInput(stored.expires_at) : "";
    $("k-expires_at").min = localInput(Math.ceil(Date.now() / 1000 / 60) * 60);
    for (const input of document.querySelectorAll("#key-form [data-limit]")) {
      const value = stored ? stored[input.dataset.limit] : null;
      input.value = typeof value === "number" ? String(value) : "";
    }
    const mode = stored ? stored.permission_mode : "allow_all";
    $("k-mode-all").checked = mode !== "per_instance";
    $("k-mode-some").checked = mode === "per_instance";
    buildPermissionRows(instances, stored ? stored.permissions : []);
    showKeyMode();
  }

  // One row per instance (div.perm-row[data-instance]), those of the key chosen at their
  // level; an instance the key names that the list lacks is still shown, so that saving
  // does not drop it unseen.
  function buildPermissionRows(instances, permissions) {
    const given = new Map(permissions.map((p) => [p.instance_id, p]));
    const entries = instances.filter((inst) => typeof inst.id === "number").map((inst) => [inst.id, inst.name]);
    for (const p of permissions) {
      if (!entries.some(([id]) => id === p.instance_id)) entries.push([p.instance_id, p.instance_name]);
    }
    const rows = entries.map(([id, name]) => permissionRow(id, name, given.get(id)));
    $("k-instances").replaceChildren(...rows);
    $("k-no-instances").hidden = rows.length > 0;
  }

  function permissionRow(id, name, permission) {
    const check = el("input", { type: "checkbox", class: "perm-check", checked: Boolean(permission) });
    const select = el(
      "select", { class: "perm-level", "aria-label": "Level for " + name },
      ...LEVELS.map((level) => el("option", { value: level.value, text: level.label })),
    );
    select.value = permission ? levelOf(permission).value : NEW_LEVEL;
    select.addEventListener("change", () => { check.checked = true; });
    return el(
      "div", { class: "field perm-row", "data-field": "permission-" + id, "data-id": String(id), "data-instance": name },
      el("label", { class: "inline perm-pick" }, check, " ", el("span", { class: "perm-name", text: name })),
      select,
      el("p", { class: "field-error", hidden: true }),
    );
  }

  function keyMode() {
    return $("k-mode-some").checked ? "per_instance" : "allow_all";
  }

  function showKeyMode() {
    $("k-permissions").hidden = keyMode() !== "per_instance";
  }

  for (const id of ["k-mode-all", "k-mode-some"]) $(id).addEventListener("change", showKeyMode);

  $("k-expires-never").addEventListener("click", () => {
    $("k-expires_at").value = "";
    $("k-expires_at").dispatchEvent(new Event("input", { bubbles: true }));
  });

  // The chosen instances in the order shown, each with its row (an error names its index).
  function chosenPermissions() {
    const chosen = [];
    for (const row of $("k-instances").querySelectorAll(".perm-row")) {
      if (!row.querySelector(".perm-check").checked) continue;
      const level = levelByValue(row.querySelector(".perm-level").value);
      const permission = { instance_id: Number(row.dataset.id), can_start: level.can_start, can_evict: level.can_evict };
      chosen.push({ row, permission });
    }
    return chosen;
  }

  // What the form says, in the API's terms (null: no limit, no expiry).
  function keyFormValues() {
    const mode = keyMode();
    return {
      name: $("k-name").value.trim(),
      permission_mode: mode,
      chosen: mode === "per_instance" ? chosenPermissions() : [],
      max_concurrent: readLimit($("k-max_concurrent")),
      requests_per_minute: readLimit($("k-requests_per_minute")),
      expires: $("k-expires_at").value,
    };
  }

  function createBody(values) {
    const body = { name: values.name, permission_mode: values.permission_mode };
    if (values.permission_mode === "per_instance") body.permissions = values.chosen.map((c) => c.permission);
    for (const field of ["max_concurrent", "requests_per_minute"]) {
      if (values[field] !== null) body[field] = values[field];
    }
    const expires = fromLocalInput(values.expires);
    if (expires !== null) body.expires_at = expires;
    return body;
  }

  const permissionsKey = (permissions) =>
    permissions.map((p) => p.instance_id + ":" + levelOf(p).value).sort().join(",");

  // Only what differs from the stored key (null clears a limit or the expiry). A change of
  // mode sends the permissions too: none for allow_all, so that none are left behind.
  function changedFields(values, stored) {
    const body = {};
    if (values.name !== stored.name.trim()) body.name = values.name;
    const wanted = values.chosen.map((c) => c.permission);
    if (values.permission_mode !== stored.permission_mode) {
      body.permission_mode = values.permission_mode;
      body.permissions = wanted;
    } else if (values.permission_mode === "per_instance" && permissionsKey(wanted) !== permissionsKey(stored.permissions)) {
      body.permissions = wanted;
    }
    for (const field of ["max_concurrent", "requests_per_minute"]) {
      if (values[field] !== stored[field]) body[field] = values[field];
    }
    if (values.expires !== localInput(stored.expires_at)) body.expires_at = fromLocalInput(values.expires);
    return body;
  }

  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearKeyFormErrors();
    clearMessage();
    const stored = state.keyEditing;
    const values = keyFormValues();
    const body = stored ? changedFields(values, stored) : createBody(values);
    if (stored && !Object.keys(body).length) {
      toast("Nothing to save: the key is as it was.");
      location.hash = "#/keys";
      return;
    }
    $("key-submit").disabled = true;
    try {
      if (stored) {
        const saved = await api("PUT", "auth/keys/" + stored.id, { body });
        toast("Saved the key " + saved.name + ".");
        location.hash = "#/keys";
      } else {
        const created = await api("POST", "auth/keys", { body });
        location.hash = "#/keys";
        showNewKey(created.name, created.key);
      }
    } catch (err) {
      showKeyFormError(err, body.permissions ? values.chosen.map((c) => c.row) : []);
    } finally {
      $("key-submit").disabled = false;
    }
  });

  function clearKeyFormErrors() {
    $("key-form-error").hidden = true;
    for (const node of document.querySelectorAll("#key-form .field-error")) {
      node.hidden = true;
      node.textContent = "";
    }
    for (const node of document.querySelectorAll("#key-form .has-error")) node.classList.remove("has-error");
  }

  // The server's message at the top of the form and next to the field it names
  // ("expires_at: ...", "permissions[1].instance_id: ..." is the second instance sent).
  function showKeyFormError(err, sentRows) {
    const box = $("key-form-error");
    box.textContent = err.message;
    box.hidden = false;
    const target = keyErrorField(err.message, sentRows);
    box.dataset.errorField = target ? target.dataset.field : "";
    if (target) {
      const node = target.querySelector(":scope > .field-error");
      node.textContent = err.message;
      node.hidden = false;
      target.classList.add("has-error");
      const input = target.querySelector("input, select");
      if (input) input.focus();
    }
    box.scrollIntoView({ block: "nearest" });
  }

  function keyErrorField(message, sentRows) {
    const match = /^([a-z_]+)(?:\[(\d+)\])?[.:]/.exec(message);
    if (!match) return null;
    if (match[1] === "permissions" && match[2] !== undefined) {
      return sentRows[Number(match[2])] || $("k-permissions");
    }
    return $("key-form").querySelector('.field[data-field="' + match[1] + '"]');
  }

  // Correcting a field clears its error (and the summary at the top, if it was about it).
  function clearKeyFieldError(event) {
    const field = event.target.closest(".field.has-error");
    if (!field) return;
    field.classList.remove("has-error");
    const node = field.querySelector(":scope > .field-error");
    node.hidden = true;
    node.textContent = "";
    if ($("key-form-error").dataset.errorField === field.dataset.field) $("key-form-error").hidden = true;
  }

  $("key-form").addEventListener("input", clearKeyFieldError);
  $("key-form").addEventListener("change", clearKeyFieldError);

  // -- the new key, shown once ------------------------------------------------------------

  // The key is put in the dialog and nowhere else; closing the dialog (Done, or Escape)
  // takes it out of the page, and no variable holds it after.
  function showNewKey(name, secret) {
    $("key-created-name").textContent = name;
    $("key-created-value").textContent = secret;
    $("key-created-state").textContent = "";
    $("key-created").showModal();
    $("key-created-copy").focus();
  }

  function forgetNewKey() {
    $("key-created-value").textContent = "";
    $("key-created-name").textContent = "";
    $("key-created-state").textContent = "";
    const selection = window.getSelection();
    if (selection) selection.removeAllRanges();
  }

  // Forgotten as it closes: Done and Escape ("cancel") come before the dialog closes; the
  // "close" event, which comes a moment after, covers any other way.
  $("key-created-close").addEventListener("click", () => {
    forgetNewKey();
    $("key-created").close();
  });
  $("key-created").addEventListener("cancel", forgetNewKey);
  $("key-created").addEventListener("close", forgetNewKey);

  // The clipboard API where the browser offers it (a secure context: https, or this
  // machine); otherwise the key is selected, and copied if the browser still allows it.
  $("key-created-copy").addEventListener("click", async () => {
    const node = $("key-created-value");
    const note = $("key-created-state");
    try {
      await navigator.clipboard.writeText(node.textContent);
      note.textContent = "Copied to the clipboard.";
      return;
    } catch (e) { /* no clipboard API here, or it was refused: select it instead */ }
    const range = document.createRange();
    range.selectNodeContents(node);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    let copied = false;
    try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
    note.textContent = copied ? "Copied to the clipboard." : "The key is selected: press Ctrl+C to copy it.";
  });

  // -- system -----------------------------------------------------------------------------

  async function fillText(id, path) {
    const node = $(id);
    node.classList.remove("failure");
    node.textContent = "Loading…";
    try {
      node.textContent = (await api("GET", path, { text: true })).trim() || "(nothing printed)";
    } catch (err) {
      node.textContent = err.message;
      node.classList.add("failure");
    }
  }

  function openSystem() {
    showView("system");
    fillText("sys-version", "version");
    fillText("sys-llama-version", "backends/llama-cpp/version");
    fillText("sys-llama-devices", "backends/llama-cpp/devices");
    const node = $("sys-config");
    node.textContent = "Loading…";
    api("GET", "config").then(
      (config) => {
        state.config = config;
        node.textContent = JSON.stringify(config, null, 2);
      },
      (err) => { node.textContent = err.message; },
    );
  }

  $("system-refresh").addEventListener("click", openSystem);

  // -- start ------------------------------------------------------------------------------

  // What the other files of the dashboard use (they run after this one, before the page
  // is routed: every deferred script runs before DOMContentLoaded).
  window.llamactl = {
    state, el, api, enc, errorFrom, key, showView, showMessage, clearMessage, setText, toast,
    ago, localTime, readSse, registerPage,
  };

  applyTheme(document.documentElement.dataset.theme);
  buildBackendFields();
  document.addEventListener("DOMContentLoaded", () => {
    route();
    document.body.dataset.ready = "true";
  });
})();
