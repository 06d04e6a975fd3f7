// The operator's dashboard. Every string from the server reaches the page through textContent or an
// attribute, never as markup; the charts are SVG drawn here.
(() => {
  const KEY = "tasklane.functionKey";
  const REFRESH_MS = 2000;
  const WINDOW_S = 600; // the charts keep the last ten minutes
  const MIN_WINDOW_S = 60; // and show at least one, so a fresh page's first points are not a sliver
  const PAGE = 50;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STATUSES = ["queued", "scheduled", "running", "succeeded", "failed", "dead-lettered", "cancelled", "expired"];
  const TOTALS = ["accepted", "processed", "failed", "dead_lettered", "redriven", "undecodable", "cancelled", "expired", "throttled"];

  // The key comes once as ?code= and then lives in this tab's sessionStorage, off the URL and history.
  const here = new URL(location.href);
  if (here.searchParams.has("code")) {
    sessionStorage.setItem(KEY, here.searchParams.get("code") || "");
    here.searchParams.delete("code");
    history.replaceState(history.state, "", here.pathname + here.search + here.hash);
  }

  const state = {
    view: "overview",
    series: [], // {t, active, scheduled, dead, accepted, processed, failed}
    previous: null,
    stats: null,
    types: new Set(),
    filter: { status: "", type: "" },
    tasks: [],
    cursor: null,
    tasksRequest: 0,
    dead: [],
    detailId: null,
    detailShown: "",
    updatedAt: 0,
  };

  // ---- DOM helpers: text only, never markup
  function svg(tag, attributes = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    node.append(...children);
    return node;
  }
  const setText = (id, text) => { byId(id).textContent = text; };

  // ---- Formatting
  const numbers = new Intl.NumberFormat();
  const count = (n) => (n === null || n === undefined ? "—" : numbers.format(n));
  const rate = (n) => (n === null || n === undefined || !Number.isFinite(n) ? "—" : n < 10 ? n.toFixed(1) : numbers.format(Math.round(n)));
  function seconds(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return "—";
    if (s < 0.001) return `${Math.round(s * 1e6)} µs`;
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  }
  function ago(iso) {
    const at = Date.parse(iso);
    if (!iso || Number.isNaN(at)) return "—";
    const s = (Date.now() - at) / 1000;
    if (s < -1) return `in ${seconds(-s).replace(/ \d+ (s|min)$/, "")}`;
    if (s < 5) return "just now";
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return new Date(at).toLocaleDateString();
  }
  const when = (iso) => (iso ? el("time", { datetime: iso, title: new Date(iso).toLocaleString(), text: ago(iso) }) : "—");
  const between = (from, to) => (from && to ? (Date.parse(to) - Date.parse(from)) / 1000 : null);
  const shortId = (id) => (id.length > 12 ? `${id.slice(0, 8)}…` : id);
  const badge = (status) => el("span", { class: `badge s-${STATUSES.includes(status) ? status : "other"}`, text: status });

  // ---- The API, relative to this page, so any route prefix works
  class ApiError extends Error {
    constructor(status, body) {
      super(body && body.error ? `${body.error}${body.detail ? ` (${body.detail})` : ""}` : `HTTP ${status}`);
      this.status = status;
    }
  }
  async function api(path, { method = "GET", accept = [] } = {}) {
    const response = await fetch(new URL(path, location.href), {
      method,
      cache: "no-store",
      headers: { "x-functions-key": sessionStorage.getItem(KEY) || "", accept: "application/json" },
    });
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch { body = { error: text.slice(0, 200) }; }
    if (!response.ok && !accept.includes(response.status)) throw new ApiError(response.status, body);
    return body;
  }

  // ---- Feedback: a banner for the connection, toasts for actions
  function showBanner(message, withKeyForm = false) {
    const banner = byId("banner");
    if (!message) { banner.hidden = true; banner.replaceChildren(); return; }
    if (banner.dataset.message === message && !banner.hidden) return;
    banner.dataset.message = message;
    const parts = [el("span", { text: message })];
    if (withKeyForm) {
      const input = el("input", { type: "password", "aria-label": "Function key", placeholder: "function key", autocomplete: "off" });
      const use = () => { sessionStorage.setItem(KEY, input.value.trim()); showBanner(null); refresh(); };
      input.addEventListener("keydown", (e) => { if (e.key === "Enter") use(); });
      parts.push(input, el("button", { type: "button", text: "Use key", onclick: use }));
    }
    banner.replaceChildren(...parts);
    banner.hidden = false;
  }
  function toast(message, bad = false) {
    const item = el("div", { class: bad ? "toast bad" : "toast", role: "status", text: message });
    byId("toasts").append(item);
    setTimeout(() => item.remove(), bad ? 8000 : 4000);
  }
  function failed(error) {
    if (error instanceof ApiError && error.status === 401) {
      showBanner("The function key was not accepted.", true);
    } else {
      showBanner(`Cannot read the API: ${error.message}`);
    }
    const fresh = byId("freshness");
    fresh.className = "freshness stale";
    fresh.textContent = state.updatedAt ? `last update ${new Date(state.updatedAt).toLocaleTimeString()}` : "not connected";
  }

  // ---- Charts
  function niceCeiling(value) {
    if (value <= 0) return 1;
    const magnitude = 10 ** Math.floor(Math.log10(value));
    const step = [1, 2, 2.5, 5, 10].find((f) => f * magnitude >= value);
    return step * magnitude;
  }
  function lineChart(host, series, label) {
    const width = Math.max(260, Math.round(host.clientWidth || 600));
    const height = Math.max(120, Math.round(host.clientHeight || 170));
    const pad = { left: 44, right: 10, top: 8, bottom: 22 };
    const points = state.series;
    const end = points.length ? points[points.length - 1].t : Date.now() / 1000;
    const span = points.length ? Math.min(WINDOW_S, Math.max(MIN_WINDOW_S, end - points[0].t)) : MIN_WINDOW_S;
    const start = end - span;
    let max = 0;
    for (const p of points) for (const s of series) if (p[s.key] !== null && p[s.key] > max) max = p[s.key];
    const top = niceCeiling(max);
    const x = (t) => pad.left + ((t - start) / span) * (width - pad.left - pad.right);
    const y = (v) => pad.top + (1 - v / top) * (height - pad.top - pad.bottom);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
    for (const fraction of [0, 0.5, 1]) {
      const v = top * fraction;
      root.append(svg("line", { class: "grid-line", x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }));
      const text = svg("text", { class: "axis", x: pad.left - 6, y: y(v) + 4, "text-anchor": "end" });
      text.textContent = Number.isInteger(v) ? numbers.format(v) : String(Number(v.toFixed(2)));
      root.append(text);
    }
    const back = (s) => (s >= 60 ? `−${Number((s / 60).toFixed(1))} min` : `−${Math.round(s)} s`);
    for (const [offset, name] of [[span, back(span)], [span / 2, back(span / 2)], [0, "now"]]) {
      const text = svg("text", { class: "axis", x: x(end - offset), y: height - 4, "text-anchor": offset === 0 ? "end" : offset === span ? "start" : "middle" });
      text.textContent = name;
      root.append(text);
    }
    const visible = points.filter((p) => p.t >= start);
    series.forEach((s, index) => {
      let path = "";
      let pen = false;
      for (const p of visible) {
        const v = p[s.key];
        if (v === null || v === undefined) { pen = false; continue; }
        path += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      }
      if (!path) return;
      if (index === 0) {
        const known = visible.filter((p) => p[s.key] !== null && p[s.key] !== undefined);
        const area = `${path}L${x(known[known.length - 1].t).toFixed(1)},${y(0)}L${x(known[0].t).toFixed(1)},${y(0)}Z`;
        root.append(svg("path", { class: `area ${s.key}`, d: area }));
      }
      root.append(svg("path", { class: `line ${s.key}`, d: path }));
      const last = visible[visible.length - 1];
      if (last && last[s.key] !== null && last[s.key] !== undefined) {
        root.append(svg("circle", { class: `dot ${s.key}`, cx: x(last.t), cy: y(last[s.key]), r: 3.5 }));
      }
    });
    host.replaceChildren(root);
  }
  function ratioBar(good, poor, label) {
    const total = good + poor;
    const share = total ? (good / total) * 100 : 0;
    const root = svg("svg", { class: "bar", viewBox: "0 0 100 8", preserveAspectRatio: "none", role: "img", "aria-label": label });
    root.append(svg("rect", { class: "track", x: 0, y: 0, width: 100, height: 8 }));
    if (total) {
      root.append(svg("rect", { class: "good", x: 0, y: 0, width: share, height: 8 }));
      root.append(svg("rect", { class: "poor", x: share, y: 0, width: 100 - share, height: 8 }));
    }
    return root;
  }

  // ---- Overview
  function record(stats) {
    state.stats = stats;
    for (const type of Object.keys(stats.per_type)) state.types.add(type);
    const backlog = stats.backlog;
    const previous = state.previous;
    const elapsed = previous ? stats.taken_at - previous.taken_at : 0;
    // Rates over less than a second (a refresh right after an action) would be mostly noise.
    if (previous && elapsed < 1) return;
    const perSecond = (name) => (previous ? Math.max(0, stats.totals[name] - previous.totals[name]) / elapsed : null);
    state.series.push({
      t: stats.taken_at,
      active: backlog ? backlog.active : null,
      scheduled: backlog && backlog.scheduled !== null ? backlog.scheduled : null,
      dead: backlog ? backlog.dead_lettered : null,
      accepted: perSecond("accepted"),
      processed: perSecond("processed"),
      failed: perSecond("failed"),
    });
    while (state.series.length && state.series[0].t < stats.taken_at - WINDOW_S - 10) state.series.shift();
    state.previous = stats;
  }

  function renderOverview() {
    const stats = state.stats;
    if (!stats) return;
    const backlog = stats.backlog;
    setText("kpi-active", backlog ? count(backlog.active) : "—");
    const lanes = backlog && backlog.lanes;
    setText("kpi-lanes", lanes ? `high ${count(lanes.high)} · normal ${count(lanes.normal)} · low ${count(lanes.low)}` : "active messages");
    const admission = stats.admission;
    setText("kpi-unfinished", count(admission.unfinished));
    setText("kpi-limit", `of ${count(admission.limit)} admitted at most`);
    byId("kpi-unfinished").parentElement.classList.toggle("full", admission.unfinished >= admission.limit);
    const scheduledKnown = backlog && backlog.scheduled !== null;
    setText("kpi-scheduled", scheduledKnown ? count(backlog.scheduled) : "—");
    setText("kpi-scheduled-sub", scheduledKnown || !backlog ? "waiting for their time" : "not counted by this broker");
    setText("kpi-dead", backlog ? count(backlog.dead_lettered) : "—");
    byId("kpi-dead").parentElement.classList.toggle("nonzero", Boolean(backlog && backlog.dead_lettered));
    const latest = state.series[state.series.length - 1];
    setText("kpi-accepted-rate", rate(latest.accepted));
    setText("kpi-processed-rate", rate(latest.processed));
    setText("kpi-processed-avg", `${rate(stats.throughput.per_second)} / s over ${stats.throughput.window_seconds} s`);
    setText("backlog-age", backlog ? `${backlog.queue} · counted ${seconds(backlog.age_seconds)} ago` : "no count yet: the backlog timer has not run");
    const dead = byId("dead-count");
    dead.hidden = !(backlog && backlog.dead_lettered);
    dead.textContent = backlog ? count(backlog.dead_lettered) : "";
    for (const name of TOTALS) setText(`total-${name}`, count(stats.totals[name]));

    const latency = stats.latency_seconds;
    byId("latency-rows").replaceChildren(
      ...[["Queue wait", latency.queue_wait], ["Processing", latency.processing]].map(([name, q]) =>
        el("tr", {}, el("th", { scope: "row", text: name }), ...["p50", "p90", "p95", "p99"].map((p) => el("td", { text: seconds(q[p]) })))),
    );

    const cache = stats.cache;
    setText("cache-hits", count(cache.hits));
    setText("cache-misses", count(cache.misses));
    setText("cache-keys", count(cache.keys));
    setText("cache-ratio", cache.hit_ratio === null ? "no lookups yet" : `${(cache.hit_ratio * 100).toFixed(1)} % hits`);
    byId("cache-bar").replaceChildren(ratioBar(cache.hits, cache.misses, "hits against misses"));

    const types = Object.entries(stats.per_type);
    byId("type-rows").replaceChildren(
      ...(types.length
        ? types.map(([type, figures]) =>
          el("tr", {},
            el("td", {}, el("button", { type: "button", class: "link", text: type, title: "show its tasks", onclick: () => showTasksOf(type) })),
            el("td", { class: "num", text: count(figures.accepted) }),
            el("td", { class: "num", text: count(figures.processed) }),
            el("td", { class: "num", text: count(figures.failed) }),
            el("td", { class: "num opt", text: count(figures.throttled) }),
            el("td", { class: "opt", text: limitsOf(stats.limits[type]) }),
            el("td", { class: "outcome opt" }, ratioBar(figures.processed, figures.failed, `${type}: succeeded against failed attempts`))))
        : [el("tr", {}, el("td", { colspan: 7, class: "empty", text: "No task accepted yet." }))]),
    );
    lineChart(byId("backlog-chart"), [{ key: "active" }, { key: "scheduled" }, { key: "dead" }], "Backlog over the last minutes");
    lineChart(byId("throughput-chart"), [{ key: "accepted" }, { key: "processed" }, { key: "failed" }], "Tasks per second over the last minutes");
  }

  function limitsOf(limits) {
    if (!limits) return "—";
    const parts = [];
    if (limits.rate_limit) parts.push(limits.rate_limit);
    if (limits.concurrency) parts.push(`${limits.concurrency} at once`);
    return parts.join(" · ");
  }

  function renderReadiness(ready) {
    const checks = ready && ready.checks ? Object.entries(ready.checks) : [];
    byId("readiness").replaceChildren(
      ...checks.map(([name, ok]) => el("li", { class: ok ? "ready" : "down", title: ok ? `${name} answers` : `${name} does not answer` }, `${name}${ok ? "" : " down"}`)),
    );
  }

  // ---- Tasks
  function fillSelect(select, values, allLabel) {
    const chosen = select.value;
    const wanted = ["", ...values];
    const shown = [...select.options].map((o) => o.value);
    if (wanted.join("\n") === shown.join("\n")) return;
    select.replaceChildren(...wanted.map((v) => el("option", { value: v, text: v || allLabel })));
    select.value = wanted.includes(chosen) ? chosen : "";
  }

  async function loadTasks(more = false) {
    const ticket = ++state.tasksRequest;
    const query = new URLSearchParams();
    if (state.filter.status) query.set("status", state.filter.status);
    if (state.filter.type) query.set("type", state.filter.type);
    query.set("limit", String(more ? PAGE : Math.min(200, Math.max(PAGE, state.tasks.length))));
    if (more && state.cursor) query.set("cursor", state.cursor);
    const page = await api(`tasks?${query}`);
    if (ticket !== state.tasksRequest) return; // a newer filter answered first
    state.tasks = more ? state.tasks.concat(page.tasks) : page.tasks;
    state.cursor = page.cursor;
    for (const task of page.tasks) if (task.type) state.types.add(task.type);
    renderTasks();
  }

  function renderTasks() {
    fillSelect(byId("filter-type"), [...state.types].sort(), "all");
    const rows = state.tasks.map((task) =>
      el("tr", { "data-id": task.id, "data-status": task.status, onclick: () => openDetail(task.id).catch(failed) },
        el("td", {}, el("button", { type: "button", class: "link mono", title: task.id, text: shortId(task.id) })),
        el("td", { text: task.type || "—" }),
        el("td", {}, badge(task.status)),
        el("td", { class: `opt priority ${task.priority || "normal"}`, text: task.priority || "normal" }),
        el("td", { class: "num opt", text: count(task.attempts) }),
        el("td", {}, when(task.submitted_at)),
        el("td", { class: "opt", text: seconds(between(task.started_at, task.finished_at)) }),
        el("td", { class: "opt error-line", title: task.error || "", text: task.error || "" })));
    byId("task-rows").replaceChildren(...rows);
    byId("tasks-empty").hidden = rows.length > 0;
    byId("tasks-more").hidden = !state.cursor;
    const filters = [state.filter.status, state.filter.type].filter(Boolean).join(", ");
    setText("tasks-note", `${rows.length} shown${filters ? ` · ${filters}` : ""} · newest first`);
  }

  function showTasksOf(type) {
    state.filter = { status: "", type };
    byId("filter-status").value = "";
    state.types.add(type);
    fillSelect(byId("filter-type"), [...state.types].sort(), "all");
    byId("filter-type").value = type;
    state.tasks = [];
    show("tasks");
  }

  // ---- Dead letters
  async function loadDeadLetters() {
    const page = await api("dead-letters?limit=200");
    state.dead = page.tasks;
    const rows = state.dead.map((task) =>
      el("tr", { "data-id": task.id, onclick: () => openDetail(task.id).catch(failed) },
        el("td", {}, el("button", { type: "button", class: "link mono", title: task.id, text: shortId(task.id) })),
        el("td", { text: task.type || "—" }),
        el("td", { class: "num opt", text: count(task.attempts) }),
        el("td", { class: "opt" }, when(task.finished_at)),
        el("td", { class: "error-line", title: task.error || "", text: `${task.reason ? `${task.reason}: ` : ""}${task.error || "—"}` }),
        el("td", {}, el("button", {
          type: "button", class: "plain small retry", text: "Retry", "aria-label": `Retry task ${task.id}`,
          onclick: (event) => { event.stopPropagation(); retry(task.id, event.currentTarget); },
        }))));
    byId("dead-rows").replaceChildren(...rows);
    byId("dead-empty").hidden = rows.length > 0;
    const queued = state.stats && state.stats.backlog ? state.stats.backlog.dead_lettered : null;
    setText("dead-summary", `${count(rows.length)} dead-lettered task${rows.length === 1 ? "" : "s"}${queued === null ? "" : ` · ${count(queued)} message${queued === 1 ? "" : "s"} in the dead-letter queue`}`);
  }

  function confirmAction(title, text, action) {
    const dialog = byId("confirm");
    setText("confirm-title", title);
    setText("confirm-text", text);
    setText("confirm-yes", action);
    dialog.returnValue = "";
    dialog.showModal();
    byId("confirm-no").focus();
    return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true }));
  }

  async function act(work, done, button) {
    if (button) button.disabled = true;
    try {
      toast(done(await work()));
    } catch (error) {
      toast(error instanceof ApiError && error.status === 409 ? `Not now: ${error.message}` : `Failed: ${error.message}`, true);
    } finally {
      if (button) button.disabled = false;
    }
    await refresh();
  }
  const retry = (id, button) =>
    act(() => api(`tasks/${encodeURIComponent(id)}/retry`, { method: "POST" }), () => `Task ${shortId(id)} sent again`, button);
  const cancel = (id, button) =>
    act(() => api(`tasks/${encodeURIComponent(id)}`, { method: "DELETE" }), () => `Task ${shortId(id)} cancelled`, button);

  byId("redrive-all").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const yes = await confirmAction("Redrive every dead letter?", "Every task in the dead-letter queue is sent again with its attempts reset. Messages that are not tasks stay.", "Redrive all");
    if (yes) await act(() => api("dead-letters/redrive", { method: "POST" }), (r) => `${count(r.redriven)} task${r.redriven === 1 ? "" : "s"} sent again`, button);
  });
  byId("purge").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const yes = await confirmAction("Purge the dead-letter queue?", "Every message in the dead-letter queue is deleted and cannot be redriven from it. The tasks' statuses stay. This cannot be undone.", "Purge");
    if (yes) await act(() => api("dead-letters", { method: "DELETE" }), (r) => `${count(r.purged)} dead letter${r.purged === 1 ? "" : "s"} purged`, button);
  });
  byId("confirm-yes").addEventListener("click", () => byId("confirm").close("yes"));
  byId("confirm-no").addEventListener("click", () => byId("confirm").close("no"));

  // ---- Task detail
  async function openDetail(id) {
    state.detailId = id;
    state.detailShown = "";
    byId("detail-body").replaceChildren(el("p", { class: "muted", text: "Loading…" }));
    byId("detail-actions").replaceChildren();
    setText("detail-title", `Task ${shortId(id)}`);
    if (!byId("detail").open) byId("detail").showModal();
    await loadDetail();
  }
  async function loadDetail() {
    const id = state.detailId;
    let task;
    try {
      task = await api(`tasks/${encodeURIComponent(id)}`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      byId("detail-body").replaceChildren(el("p", { class: "muted", text: "No such task: it may have expired." }));
      return;
    }
    if (id !== state.detailId) return;
    const shown = JSON.stringify(task);
    if (shown !== state.detailShown) { state.detailShown = shown; renderDetail(task); }
  }
  function renderDetail(task) {
    byId("detail-title").replaceChildren(el("span", { class: "mono", text: task.type || "task" }), badge(task.status));
    const fact = (name, value, wide = false) => el("div", { class: wide ? "wide" : null }, el("dt", { text: name }), el("dd", {}, value));
    const exact = (iso) => (iso ? el("time", { datetime: iso, title: ago(iso), text: new Date(iso).toLocaleString() }) : "—");
    const facts = [
      fact("Task id", el("span", { class: "mono", text: task.id }), true),
      fact("Type", task.type || "—"),
      fact("Status", task.status),
      fact("Attempts", count(task.attempts)),
      fact("Priority", task.priority || "normal"),
      fact("Submitted", exact(task.submitted_at)),
      fact("Started", exact(task.started_at)),
      fact("Finished", exact(task.finished_at)),
      fact("Waited in queue", seconds(between(task.submitted_at, task.started_at))),
      fact("Ran for", seconds(between(task.started_at, task.finished_at))),
    ];
    if (task.retry_at) facts.push(fact("Next attempt", exact(task.retry_at)));
    if (task.due_at) facts.push(fact("Due", exact(task.due_at)));
    if (task.reason) facts.push(fact("Dead-letter reason", task.reason));
    if (task.trace_id) facts.push(fact("Trace id", el("span", { class: "mono", id: "detail-trace", text: task.trace_id }), true));
    const body = [el("dl", { class: "facts" }, ...facts)];
    if ("payload" in task) body.push(el("h3", { text: "Payload" }), el("pre", { class: "payload", id: "detail-payload", text: JSON.stringify(task.payload, null, 2) }));
    if ("result" in task) body.push(el("h3", { text: "Result" }), el("pre", { class: "result", text: JSON.stringify(task.result, null, 2) }));
    if (task.error !== undefined) body.push(el("h3", { text: "Error" }), el("pre", { class: "error", text: task.error || "(no message)" }));
    if (task.traceback) body.push(el("details", { open: true }, el("summary", { text: "Traceback" }), el("pre", { class: "traceback", text: task.traceback })));
    byId("detail-body").replaceChildren(...body);
    const actions = [];
    if (task.status === "failed" || task.status === "dead-lettered") {
      actions.push(el("button", { type: "button", class: "primary", id: "detail-retry", text: "Retry", onclick: (e) => retry(task.id, e.currentTarget) }));
    }
    if (task.status === "queued" || task.status === "scheduled") {
      actions.push(el("button", { type: "button", class: "danger", text: "Cancel task", onclick: (e) => cancel(task.id, e.currentTarget) }));
    }
    byId("detail-actions").replaceChildren(...actions);
  }
  byId("detail-close").addEventListener("click", () => byId("detail").close());
  byId("detail").addEventListener("close", () => { state.detailId = null; });
  byId("detail").addEventListener("click", (event) => { if (event.target === byId("detail")) byId("detail").close(); });

  // ---- Views and the refresh loop
  function show(view) {
    state.view = ["overview", "tasks", "dead-letters"].includes(view) ? view : "overview";
    for (const section of document.querySelectorAll("main > .view")) section.hidden = section.id !== `view-${state.view}`;
    for (const tab of document.querySelectorAll(".tabs button")) {
      if (tab.dataset.view === state.view) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    history.replaceState(history.state, "", `${location.pathname}${location.search}#${state.view}`);
    refresh();
  }
  for (const tab of document.querySelectorAll(".tabs button")) tab.addEventListener("click", () => show(tab.dataset.view));
  fillSelect(byId("filter-status"), STATUSES, "all");
  byId("filter-status").addEventListener("change", (e) => { state.filter.status = e.target.value; state.tasks = []; refresh(); });
  byId("filter-type").addEventListener("change", (e) => { state.filter.type = e.target.value; state.tasks = []; refresh(); });
  byId("tasks-more").addEventListener("click", () => loadTasks(true).catch(failed));
  window.addEventListener("resize", () => { if (state.view === "overview") renderOverview(); });

  let running = null;
  let timer = 0;
  function refresh() {
    clearTimeout(timer);
    if (document.hidden) return Promise.resolve(); // picked up again on visibilitychange
    running = (running || Promise.resolve()).then(tick).finally(() => {
      clearTimeout(timer);
      timer = setTimeout(refresh, REFRESH_MS);
    });
    return running;
  }
  async function tick() {
    try {
      const [stats, ready] = await Promise.all([api("stats"), api("ready", { accept: [503] })]);
      renderReadiness(ready);
      record(stats);
      renderOverview();
      if (state.view === "tasks") await loadTasks();
      if (state.view === "dead-letters") await loadDeadLetters();
      if (state.detailId) await loadDetail();
      state.updatedAt = Date.now();
      showBanner(null);
      const fresh = byId("freshness");
      fresh.className = "freshness live";
      fresh.textContent = `live · ${new Date(state.updatedAt).toLocaleTimeString()}`;
    } catch (error) {
      failed(error);
    }
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  show((location.hash || "#overview").slice(1));
})();
