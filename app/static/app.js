// The dashboard: one EventSource on /alltasks/events feeds the task table and the host meters.
// No framework and no build step; rows are updated in place so bars animate and buttons keep focus.
"use strict";

(() => {
  const PAGE_SIZE = 10;
  const RETRY_AFTER_REFUSAL_MS = 2000;
  const ACTIVE = new Set(["WAITING", "PROGRESS"]);
  // More segments than this would be thinner than a few pixels on a phone.
  const MAX_SEGMENTS = 40;

  const $ = (id) => document.getElementById(id);
  const view = {
    conn: $("conn"),
    connLabel: document.querySelector("#conn .conn-label"),
    hostName: $("host-name"),
    form: $("start-form"),
    decimal: $("decimal"),
    startButton: $("start-button"),
    formMessage: $("form-message"),
    rows: $("task-rows"),
    noTasks: $("no-tasks"),
    range: $("page-range"),
    newer: $("newer"),
    older: $("older"),
  };
  const maxDecimal = Number(view.form.dataset.maxDecimal) || 10;

  const HISTORY = 60; // host samples kept for the CPU chart (a second apart: a minute)
  const state = {
    offset: 0,
    total: 0,
    source: null,
    retryTimer: null,
    everLive: false, // once live, a lost stream shows "reconnecting", not "connecting"
    rows: new Map(), // task id -> row element (with .refs and .task)
    fresh: new Set(), // ids just started here: highlighted when they first appear
    cpu: [], // recent CPU percentages, oldest first
  };

  // ---- the event stream ---------------------------------------------------------------------

  function connect(switchingPages) {
    clearTimeout(state.retryTimer);
    if (state.source) state.source.close();
    const source = new EventSource(`/alltasks/events?limit=${PAGE_SIZE}&offset=${state.offset}`);
    state.source = source;
    if (!switchingPages) setConnection(state.everLive ? "reconnecting" : "connecting");
    source.addEventListener("tasks", (e) => {
      state.everLive = true;
      setConnection("live");
      renderPage(JSON.parse(e.data));
    });
    source.addEventListener("host", (e) => renderHost(JSON.parse(e.data)));
    source.addEventListener("unavailable", (e) => setConnection("unavailable", JSON.parse(e.data).detail));
    source.addEventListener("error", () => {
      if (source !== state.source) return;
      setConnection("reconnecting");
      // The browser retries by itself after a dropped connection, but gives up on an HTTP error
      // (a 503 while the gateway restarts, or too many streams): then we retry.
      if (source.readyState === EventSource.CLOSED) {
        state.retryTimer = setTimeout(() => connect(false), RETRY_AFTER_REFUSAL_MS);
      }
    });
  }

  function setConnection(kind, detail) {
    const labels = {
      connecting: "connecting…",
      live: "live",
      reconnecting: "reconnecting…",
      unavailable: "compute service unavailable",
    };
    view.conn.dataset.state = kind;
    view.connLabel.textContent = labels[kind];
    view.conn.title = detail || "";
  }

  // ---- the task table -----------------------------------------------------------------------

  function renderPage(page) {
    if (page.offset !== state.offset) return; // a late event of the page we just left
    if (!page.tasks.length && page.offset > 0) {
      goTo(Math.max(0, page.offset - PAGE_SIZE)); // the page emptied (retention): step back
      return;
    }
    state.total = page.total;
    const seen = new Set();
    let previous = null;
    for (const task of page.tasks) {
      let row = state.rows.get(task.id);
      if (!row) {
        row = makeRow(task.id);
        state.rows.set(task.id, row);
        if (state.fresh.delete(task.id)) flash(row);
      }
      updateRow(row, task);
      seen.add(task.id);
      const wanted = previous ? previous.nextSibling : view.rows.firstChild;
      if (wanted !== row) view.rows.insertBefore(row, wanted);
      previous = row;
    }
    for (const [id, row] of state.rows) {
      if (!seen.has(id)) {
        row.remove();
        state.rows.delete(id);
      }
    }
    const first = page.tasks.length ? page.offset + 1 : 0;
    view.range.textContent = page.total ? `${first}–${page.offset + page.tasks.length} of ${page.total}` : "";
    view.newer.disabled = page.offset === 0;
    view.older.disabled = page.offset + page.tasks.length >= page.total;
    view.noTasks.hidden = page.tasks.length > 0;
    view.noTasks.textContent = "No tasks yet: start one above.";
  }

  function goTo(offset) {
    if (offset === state.offset) return;
    state.offset = offset;
    for (const row of state.rows.values()) row.remove();
    state.rows.clear();
    view.noTasks.hidden = false;
    view.noTasks.textContent = "Loading tasks…";
    connect(true);
  }

  function makeRow(id) {
    const row = document.createElement("tr");
    row.dataset.id = id;
    const cell = (name, label) => {
      const td = document.createElement("td");
      td.className = `cell-${name}`;
      if (label) td.dataset.label = label;
      row.append(td);
      return td;
    };
    const task = cell("task");
    const idText = el("span", "task-id", id.slice(0, 8));
    idText.title = id;
    const decimal = el("span", "task-decimal");
    task.append(idText, decimal);

    const status = cell("status");
    const badge = el("span", "badge");
    badge.dataset.field = "status";
    const flag = el("span", "flag");
    status.append(badge, flag);

    const progressCell = cell("progress", "Progress");
    const progress = el("div", "progress");
    const track = el("div", "track");
    track.setAttribute("role", "progressbar");
    track.setAttribute("aria-valuemin", "0");
    track.setAttribute("aria-valuemax", "100");
    track.setAttribute("aria-label", `Progress of task ${id.slice(0, 8)}`);
    track.dataset.field = "progress";
    const fill = el("div", "fill");
    track.append(fill);
    const pct = el("span", "pct");
    progress.append(track, pct);
    // A split calculation: how many of its chunks are done, and on how many hosts.
    const chunks = el("span", "chunks");
    chunks.dataset.field = "chunks";
    progressCell.append(progress, chunks);

    const value = el("span", "value");
    value.dataset.field = "value";
    cell("value", "Value").append(value);

    const queued = cell("queued", "Queued");
    const started = cell("started", "Started");
    const finished = cell("finished", "Finished");
    for (const td of [queued, started, finished]) td.classList.add("time");
    const elapsed = cell("elapsed", "Elapsed");
    elapsed.classList.add("elapsed", "num");
    elapsed.dataset.field = "elapsed";

    const actions = cell("actions");
    actions.classList.add("actions");

    row.refs = { decimal, badge, flag, progress, track, fill, pct, chunks, value, queued, started, finished, elapsed, actions };
    return row;
  }

  function updateRow(row, task) {
    const r = row.refs;
    const previous = row.task;
    // A final state never turns back: an active state arriving after it is an older answer.
    if (previous && !ACTIVE.has(previous.status) && ACTIVE.has(task.status)) return;
    row.task = task;
    row.dataset.status = task.status;
    r.decimal.textContent = `${task.decimal} decimal${task.decimal === 1 ? "" : "s"}`;
    r.badge.textContent = task.status;
    r.badge.dataset.status = task.status;
    r.flag.textContent = task.stalled ? "stalled: worker lost" : task.attempts > 1 ? `attempt ${task.attempts}` : "";

    // Progress never goes back, whatever order answers arrive in.
    row.shownProgress = Math.max(row.shownProgress || 0, task.progress);
    r.progress.dataset.status = task.status;
    r.fill.style.width = `${row.shownProgress}%`;
    r.track.setAttribute("aria-valuenow", String(row.shownProgress));
    r.pct.textContent = `${formatPercent(row.shownProgress)}%`;
    showChunks(r, task);

    if (task.digits) {
      setValue(r.value, "digits", task.digits);
    } else if (task.status === "PROGRESS" && task.result !== null) {
      setValue(r.value, "partial", task.result.toFixed(task.decimal));
    } else if (task.error) {
      setValue(r.value, "error", task.error);
    } else {
      setValue(r.value, "none", "—");
    }

    setTime(r.queued, task.pushqtime);
    setTime(r.started, task.starttime);
    setTime(r.finished, task.stoptime);
    r.elapsed.textContent = elapsedText(task);

    const cancellable = ACTIVE.has(task.status);
    let button = r.actions.firstChild;
    if (cancellable && !button) {
      button = el("button", "cancel", "Cancel");
      button.type = "button";
      button.setAttribute("aria-label", `Cancel task ${task.id.slice(0, 8)}`);
      button.addEventListener("click", () => cancel(row));
      r.actions.append(button);
    } else if (!cancellable && button) {
      button.remove();
    }
  }

  // The bar of a split task is drawn in segments, one a chunk (grouped when there are too many to see).
  function showChunks(r, task) {
    const total = task.chunks_total || 0;
    r.track.classList.toggle("segmented", total > 0);
    if (!total) {
      r.chunks.textContent = "";
      return;
    }
    const segments = Math.min(total, MAX_SEGMENTS);
    r.track.style.setProperty("--segment", `${100 / segments}%`);
    const hosts = task.hosts || [];
    r.chunks.textContent = `${task.chunks_done}/${total} chunks · ${hosts.length} host${hosts.length === 1 ? "" : "s"}`;
    r.chunks.title = hosts.join(", ");
  }

  function setValue(node, kind, text) {
    node.dataset.kind = kind;
    node.textContent = text;
  }

  function setTime(node, iso) {
    node.textContent = iso ? formatTime(iso) : "—";
    node.title = iso || "";
  }

  function elapsedText(task) {
    if (!task.starttime) return task.status === "WAITING" ? "waiting" : "—";
    const end = task.stoptime ? Date.parse(task.stoptime) : Date.now();
    return formatDuration(Math.max(0, end - Date.parse(task.starttime)));
  }

  function flash(row) {
    row.classList.add("fresh");
    requestAnimationFrame(() => setTimeout(() => row.classList.remove("fresh"), 600));
  }

  // ---- actions --------------------------------------------------------------------------------

  async function cancel(row) {
    const button = row.refs.actions.firstChild;
    if (button) {
      button.disabled = true;
      button.textContent = "Cancelling…";
    }
    try {
      const response = await fetch(`/task/${encodeURIComponent(row.dataset.id)}`, { method: "DELETE" });
      const body = await response.json();
      if (response.ok) {
        updateRow(row, body);
      } else {
        say(body.detail || `could not cancel (HTTP ${response.status})`, "error");
        if (button) {
          button.disabled = false;
          button.textContent = "Cancel";
        }
      }
    } catch (err) {
      say(`could not reach the gateway: ${err.message}`, "error");
      if (button) {
        button.disabled = false;
        button.textContent = "Cancel";
      }
    }
  }

  async function start(event) {
    event.preventDefault();
    const decimal = Number(view.decimal.value);
    if (!Number.isInteger(decimal) || decimal < 1 || decimal > maxDecimal) {
      say(`Enter a whole number from 1 to ${maxDecimal}.`, "error");
      view.decimal.focus();
      return;
    }
    view.startButton.disabled = true;
    try {
      const response = await fetch(`/calcpi/${decimal}`, { method: "POST" });
      const body = await response.json();
      if (response.status === 202) {
        state.fresh.add(body.id);
        say(`Queued task ${body.id.slice(0, 8)} for ${decimal} decimal${decimal === 1 ? "" : "s"}.`, "ok");
        goTo(0);
      } else {
        say(body.detail || `the gateway answered HTTP ${response.status}`, "error");
      }
    } catch (err) {
      say(`could not reach the gateway: ${err.message}`, "error");
    } finally {
      view.startButton.disabled = false;
    }
  }

  function say(text, kind) {
    view.formMessage.textContent = text;
    view.formMessage.dataset.kind = kind;
  }

  // ---- the host -------------------------------------------------------------------------------

  function renderHost(host) {
    view.hostName.textContent = `${host.hostname} · ${host.ip}`;
    const load = host.cpu.load_average.map((x) => x.toFixed(2)).join(" ");
    meter("meter-cpu", host.cpu.percent, `${host.cpu.count} CPU${host.cpu.count === 1 ? "" : "s"} · load ${load}`);
    const used = host.memory.total - host.memory.available;
    meter("meter-memory", host.memory.percent, `${formatBytes(used)} of ${formatBytes(host.memory.total)} in use`);
    meter("meter-disk", host.disk.percent, `${formatBytes(host.disk.free)} free of ${formatBytes(host.disk.total)}`,
      host.disk.path);
    state.cpu.push(host.cpu.percent);
    if (state.cpu.length > HISTORY) state.cpu.shift();
    drawHistory();
  }

  function drawHistory() {
    const svg = $("cpu-history");
    const step = 600 / (HISTORY - 1);
    const start = (HISTORY - state.cpu.length) * step; // the newest sample sits at the right edge
    const points = state.cpu.map((p, i) => `${(start + i * step).toFixed(1)},${(60 - 0.56 * p - 2).toFixed(1)}`);
    if (!points.length) return;
    const line = `M${points.join("L")}`;
    svg.querySelector(".line").setAttribute("d", line);
    svg.querySelector(".area").setAttribute("d", `${line}L600,60L${start.toFixed(1)},60Z`);
    const peak = Math.max(...state.cpu);
    $("cpu-history-range").textContent = `peak ${formatPercent(peak)}%`;
  }

  function meter(id, percent, detail, title) {
    const node = $(id);
    node.querySelector(".meter-value").textContent = `${formatPercent(percent)}%`;
    node.querySelector(".fill").style.width = `${Math.min(100, Math.max(0, percent))}%`;
    node.querySelector(".track").setAttribute("aria-valuenow", String(percent));
    const text = node.querySelector(".meter-detail");
    text.textContent = detail;
    text.title = title || "";
    node.dataset.level = percent >= 95 ? "critical" : percent >= 80 ? "high" : "normal";
  }

  // ---- formatting -----------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatPercent(p) {
    return p >= 99.95 || p === 0 ? p.toFixed(0) : p.toFixed(1);
  }

  function formatBytes(n) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) {
      n /= 1000;
      i += 1;
    }
    return `${n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`;
  }

  function formatTime(iso) {
    const when = new Date(iso);
    const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    if (when.toDateString() === new Date().toDateString()) return time;
    return `${when.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
  }

  function formatDuration(ms) {
    if (ms < 10000) return `${(ms / 1000).toFixed(1)} s`;
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }

  // ---- wiring ---------------------------------------------------------------------------------

  view.form.addEventListener("submit", start);
  for (const d of [...new Set([3, 5, 8, maxDecimal])].filter((d) => d <= maxDecimal).sort((a, b) => a - b)) {
    const chip = el("button", "chip", String(d));
    chip.type = "button";
    chip.setAttribute("aria-label", `${d} decimal places`);
    chip.addEventListener("click", () => {
      view.decimal.value = String(d);
      view.decimal.focus();
    });
    $("presets").append(chip);
  }
  view.newer.addEventListener("click", () => goTo(Math.max(0, state.offset - PAGE_SIZE)));
  view.older.addEventListener("click", () => goTo(state.offset + PAGE_SIZE));
  // Running tasks' elapsed times tick between events.
  setInterval(() => {
    for (const row of state.rows.values()) {
      if (row.task && row.task.status === "PROGRESS") row.refs.elapsed.textContent = elapsedText(row.task);
    }
  }, 250);
  window.addEventListener("pagehide", () => state.source && state.source.close());
  connect(false);
})();
