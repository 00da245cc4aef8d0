// autosteer monitor: polls the worker's JSON API and draws it. Plain JS, no build step.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const COLORS = { edge: "#2e7d32", cloud: "#1565c0", total: "#57606a", ratio: "#8250df" };
const state = { cameras: [], database: null, minutes: 15 };

// --- helpers -----------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  children.flat().forEach((c) => c != null && e.append(c instanceof Node ? c : String(c)));
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVGNS, tag);
  setAttrs(e, attrs);
  children.flat().forEach((c) => c != null && e.append(c instanceof Node ? c : String(c)));
  return e;
}

function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
}

function fmt(v, digits = 1) {
  if (v == null || Number.isNaN(v)) return "–";
  return Number(v).toFixed(digits);
}

function bytes(n) {
  if (n == null || n < 0) return "–";
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function clock(ms) {
  return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "–";
}

async function api(path, options) {
  const res = await fetch(path, options);
  const body = await res.json();
  if (!res.ok && !body.error) body.error = `${res.status} ${res.statusText}`;
  return { ok: res.ok, status: res.status, body };
}

// Run `fn` now and every `ms` after it finishes (never two at once).
function poll(fn, ms) {
  const tick = async () => {
    try { await fn(); } catch (err) { console.error(err); }
    setTimeout(tick, ms);
  };
  tick();
}

function replace(container, ...children) {
  container.replaceChildren(...children.flat().filter((c) => c != null));
}

// --- pipeline graph ----------------------------------------------------------------------
const BOX = { w: 170, h: 58 };
const LAYOUT = {
  cameras: { x: 20, y: 110, title: "cameras" },
  router: { x: 260, y: 110, title: "router" },
  edge: { x: 520, y: 26, title: "edge detector" },
  cloud: { x: 520, y: 196, title: "cloud detector" },
  results: { x: 780, y: 110, title: "results / sink" },
};

function stageSubtitle(stage, data) {
  if (stage.id === "cameras") {
    const n = state.cameras.length;
    return `${n} camera${n === 1 ? "" : "s"}`;
  }
  if (stage.id === "router") {
    const r = data.offload_ratio;
    return r == null ? "offload –" : `offload ${(100 * r).toFixed(0)}% to cloud`;
  }
  const alive = stage.nodes.filter((n) => n.state !== "dead").length;
  return `${alive}/${stage.nodes.length} node${stage.nodes.length === 1 ? "" : "s"} alive`;
}

function drawGraph(data) {
  const root = svg("svg", { viewBox: "0 0 970 330", role: "img" });
  root.append(svg("defs", {}, svg("marker", {
    id: "arrowhead", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
    orient: "auto-start-reverse",
  }, svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#57606a" }))));
  for (const e of data.edges) {
    const a = LAYOUT[e.from], b = LAYOUT[e.to];
    const x1 = a.x + BOX.w, y1 = a.y + BOX.h / 2, x2 = b.x - 4, y2 = b.y + BOX.h / 2;
    const id = `${e.from}-${e.to}`;
    root.append(svg("line", { class: "arrow", x1, y1, x2, y2, "marker-end": "url(#arrowhead)",
      "data-edge": id }));
    root.append(svg("text", { class: "rate", "data-edge": id, "data-rate": e.rate,
      x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 7, "text-anchor": "middle",
      text: `${fmt(e.rate, 1)} fps` }));
  }
  for (const stage of data.stages) {
    const p = LAYOUT[stage.id];
    const g = svg("g", { class: "stage", "data-stage": stage.id, "data-state": stage.state });
    g.append(svg("rect", { class: "box", x: p.x, y: p.y, width: BOX.w, height: BOX.h }));
    g.append(svg("text", { x: p.x + 10, y: p.y + 22, "font-weight": 600, "font-size": 14,
      text: p.title }));
    g.append(svg("text", { x: p.x + 10, y: p.y + 42, "font-size": 12, class: "subtitle",
      text: stageSubtitle(stage, data) }));
    stage.nodes.slice(0, 5).forEach((n, i) => {
      const y = p.y + BOX.h + 14 + 14 * i;
      g.append(svg("g", { class: "chip", "data-node": n.node, "data-state": n.state },
        svg("circle", { cx: p.x + 8, cy: y - 4, r: 4 }),
        svg("text", { x: p.x + 16, y, "font-size": 11, text: `${n.node} · ${n.state}` })));
    });
    if (stage.nodes.length > 5) {
      g.append(svg("text", { x: p.x + 16, y: p.y + BOX.h + 14 + 70, "font-size": 11,
        text: `+${stage.nodes.length - 5} more` }));
    }
    root.append(g);
  }
  return root;
}

function drawNodes(nodes) {
  return nodes.map((n) => {
    const r = n.rates || {};
    const routed = (r.routed_edge ?? 0) + (r.routed_cloud ?? 0);
    const detected = (r.detected_edge ?? 0) + (r.detected_cloud ?? 0);
    return el("tr", { "data-node": n.node, "data-state": n.state },
      el("td", {}, n.node, n.self ? el("span", { class: "muted", text: " (this worker)" }) : null),
      el("td", { class: `state ${n.state}`, text: n.state }),
      el("td", { text: (n.roles || []).join(", ") }),
      el("td", { text: `${clock(n.last_seen_ms)} (${fmt(n.age_s, 1)} s ago)` }),
      el("td", { class: "num", text: fmt(n.cpu_percent, 0) }),
      el("td", { class: "num", text: bytes(n.rss_bytes) }),
      el("td", { class: "num", text: n.dead_letters ?? "–" }),
      el("td", { class: "num", text: fmt(routed, 1) }),
      el("td", { class: "num", text: fmt(detected, 1) }));
  });
}

async function refreshGraph() {
  const { body } = await api("/api/graph");
  replace(document.getElementById("graph"), drawGraph(body));
  replace(document.querySelector("#nodes tbody"), drawNodes(body.nodes));
  const err = document.getElementById("graph-error");
  err.hidden = !body.error;
  err.textContent = body.error || "";
  document.getElementById("graph-source").textContent =
    body.source === "cluster"
      ? `health from heartbeats (dead after ${fmt(body.dead_after_s, 0)} s), rates over 10 s`
      : "this worker only (telemetry store unavailable)";
  document.getElementById("node").textContent = `worker ${body.node}`;
  document.getElementById("updated").textContent = `updated ${clock(body.now_ms)}`;
  if (body.database && !state.database) setDatabase(body.database);
}

// --- cameras -----------------------------------------------------------------------------
function statRow(label, value, cls) {
  return el("tr", {}, el("td", { class: "muted", text: label }),
    el("td", { class: `num ${cls || ""}`, text: value }));
}

function drawCamera(c) {
  const thumb = c.thumbnail
    ? el("img", { src: c.thumbnail, alt: `last frame of ${c.camera}` })
    : el("span", { class: "na", text: "n/a" });
  const last = c.last;
  const cl = c.cluster || {};
  const labels = last ? Object.entries(last.labels).map(([k, v]) => `${v} ${k}`).join(", ") : "";
  return el("div", { class: "camera", "data-camera": c.camera },
    el("div", { class: "thumb" }, thumb),
    el("div", {},
      el("h3", { text: c.camera }),
      el("table", {}, el("tbody", {},
        statRow("fps in", fmt(c.fps_in, 1), "fps-in"),
        statRow("fps out", fmt(c.fps_out, 1), "fps-out"),
        statRow("detected", c.frames_detected, "detected"),
        statRow("dropped / skipped / shed",
          `${c.frames_dropped ?? "–"} / ${c.frames_skipped ?? "–"} / ${c.frames_shed}`, "drops"),
        statRow("latency p50 / p95", `${fmt(c.p50_ms, 0)} / ${fmt(c.p95_ms, 0)} ms`, "latency"),
        statRow("cluster fps, p95", cl.fps == null ? "–" :
          `${fmt(cl.fps, 1)}, ${fmt(cl.p95_ms, 0)} ms`, "cluster"),
        statRow("last frame", last ? `#${last.seq} on ${last.tier}, ${fmt(last.total_ms, 0)} ms`
          : "–", "last"),
        statRow("boxes", last ? labels || "none" : "–", "labels"),
        c.ingest ? statRow("ingest", c.ingest.state, "ingest-state") : null))));
}

async function refreshCameras() {
  const { body } = await api("/api/cameras");
  state.cameras = body.cameras;
  const box = document.getElementById("cameras");
  if (!body.cameras.length) {
    replace(box, el("span", { class: "muted", text: body.error || "no cameras yet" }));
    return;
  }
  // keep loaded thumbnails when the frame has not changed (no flicker)
  const old = new Map([...box.querySelectorAll(".camera")].map((n) => [n.dataset.camera, n]));
  replace(box, body.cameras.map((c) => {
    const card = drawCamera(c);
    const prev = old.get(c.camera);
    const img = prev && prev.querySelector("img");
    if (img && c.thumbnail && img.getAttribute("src") === c.thumbnail) {
      card.querySelector(".thumb").replaceChildren(img);
    }
    return card;
  }));
}

// --- timelines ---------------------------------------------------------------------------
function tick(v, unit) {
  if (v === 0) return `0${unit}`;
  if (unit === " ms" && v >= 1000) return `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)} s`;
  if (v >= 1000) return `${(v / 1000).toFixed(1)}k${unit}`;
  return `${v < 10 ? v.toFixed(v < 1 ? 2 : 1) : v.toFixed(0)}${unit}`;
}

function lineChart(title, unit, series, markers, x0, x1, yMax) {
  const W = 460, H = 200, L = 52, R = 90, T = 20, B = 22;
  const pts = Object.values(series).flat();
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, "font-size": 10 });
  root.append(svg("text", { x: L, y: 13, "font-size": 12, "font-weight": 600, text: title }));
  const y1 = yMax || Math.max(1e-9, ...pts.map((p) => p[1])) * 1.1;
  const sx = (x) => L + ((x - x0) / Math.max(1, x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - (y / y1) * (H - T - B);
  root.append(svg("line", { class: "axis", x1: L, y1: sy(0), x2: W - R, y2: sy(0) }));
  root.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: sy(0) }));
  for (const f of [0, 0.5, 1]) {
    const v = (yMax || y1 / 1.1) * f;
    root.append(svg("text", { x: L - 4, y: sy(v) + 3, "text-anchor": "end",
      text: tick(v, unit) }));
  }
  for (const x of [x0, x1]) {
    root.append(svg("text", { x: sx(x), y: H - 6, "text-anchor": "middle",
      text: clock(x * 1000) }));
  }
  for (const m of markers) {
    const x = sx(m.ts_ms / 1000);
    root.append(svg("line", { class: "marker", x1: x, y1: T, x2: x, y2: sy(0),
      "data-kind": m.kind }, svg("title", { text: `${m.kind}: ${m.title || m.message || ""}` })));
  }
  Object.entries(series).forEach(([name, s], i) => {
    const tier = name.split(" ")[0];
    const color = COLORS[tier] || COLORS.total;
    const dashed = name.endsWith("p50");
    if (!s.length) return;
    const points = s.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points, fill: "none", stroke: color, "stroke-width": 1.6,
      "stroke-dasharray": dashed ? "4 3" : null, "data-series": name }));
    if (s.length === 1) {
      root.append(svg("circle", { cx: sx(s[0][0]), cy: sy(s[0][1]), r: 2.5, fill: color }));
    }
    root.append(svg("text", { x: W - R + 6, y: T + 8 + 13 * i, fill: color, text: name }));
  });
  if (!pts.length) {
    root.append(svg("text", { x: (L + W - R) / 2, y: H / 2, "text-anchor": "middle",
      class: "muted", fill: "#8c959f", text: "no closed windows yet" }));
  }
  return root;
}

function group(rows, key, value) {
  const out = {};
  for (const r of rows) (out[key(r)] = out[key(r)] || []).push(value(r));
  return out;
}

async function refreshTimeline() {
  const { body } = await api(`/api/timeline?minutes=${state.minutes}`);
  const bucket = body.bucket_s;
  // fit the x axis to the data while it covers less than the chosen span
  const ts = body.throughput.map((r) => r.t).concat(body.latency.map((r) => r.t));
  const x0 = ts.length ? Math.max(body.since_ms / 1000, Math.min(...ts) - bucket)
    : body.since_ms / 1000;
  const x1 = Date.now() / 1000;
  const lat = {};
  for (const r of body.latency) {
    (lat[`${r.tier} p95`] = lat[`${r.tier} p95`] || []).push([r.t + bucket / 2, r.p95_ms]);
    (lat[`${r.tier} p50`] = lat[`${r.tier} p50`] || []).push([r.t + bucket / 2, r.p50_ms]);
  }
  const fps = group(body.throughput, (r) => r.tier, (r) => [r.t + bucket / 2, r.fps]);
  const ratio = { "cloud share": body.offload.map((r) => [r.t + bucket / 2, r.ratio]) };
  replace(document.getElementById("chart-latency"),
    lineChart("End-to-end latency", " ms", lat, body.markers, x0, x1));
  replace(document.getElementById("chart-throughput"),
    lineChart("Throughput per tier", "/s", fps, body.markers, x0, x1));
  replace(document.getElementById("chart-offload"),
    lineChart("Offload ratio", "", ratio, body.markers, x0, x1, 1));
  document.getElementById("timeline-note").textContent = body.error
    ? body.error : `${bucket} s buckets from telemetry windows · ${body.markers.length} markers`;
}

// --- feeds -------------------------------------------------------------------------------
function eventItem(e) {
  const what = e.title || e.message || e.summary || e.kind;
  const where = [e.camera, e.tier, e.node].filter(Boolean).join(" · ");
  return el("li", {},
    el("span", { class: "muted", text: `${clock(e.ts_ms)} ` }), what,
    where ? el("span", { class: "muted", text: ` (${where})` }) : null,
    e.sql ? el("pre", { text: e.sql }) : null,
    e.sql ? el("button", { type: "button", text: "open in SQL box",
      onclick: () => { document.getElementById("sql").value = e.sql; } }) : null);
}

function fillFeed(id, items, draw) {
  const ul = document.getElementById(id);
  replace(ul, items.length ? items.map(draw) : el("li", { class: "empty", text: "none yet" }));
}

async function refreshFeeds() {
  const { body } = await api("/api/feeds");
  fillFeed("feed-anomalies", body.anomalies, eventItem);
  fillFeed("feed-root_causes", body.root_causes, eventItem);
  fillFeed("feed-retrain_requests", body.retrain_requests, eventItem);
  fillFeed("feed-actions", body.actions, eventItem);
  fillFeed("feed-models", body.models, (m) => el("li", { "data-tier": m.tier },
    el("b", { text: `${m.tier} ` }), `${m.model_id} ${m.model_version}`,
    el("span", { class: "muted", text: ` on ${m.node}, seen ${clock(m.last_seen_ms)}` })));
}

// --- readiness and SQL -------------------------------------------------------------------
async function refreshReady() {
  const { body } = await api("/ready");
  const pill = document.getElementById("ready");
  pill.dataset.state = body.ready ? "ok" : "dead";
  const failed = Object.entries(body.checks || {}).filter(([, c]) => !c.ok);
  const agents = Object.keys((body.checks && body.checks.agents && body.checks.agents.problems) || {});
  pill.textContent = body.ready ? "ready"
    : `not ready: ${failed.map(([k]) => (k === "agents" ? agents.join(", ") : k)).join(", ")}`;
  pill.title = JSON.stringify(body.checks || {}, null, 1);
}

// --- agents: restarts, progress and the last error of each agent and consumer thread ---
async function refreshAgents() {
  const { body } = await api("/status");
  const rows = (body.agents || []).map((a) => el("tr", { "data-state": a.state },
    el("td", { text: a.name }), el("td", { text: a.kind }),
    el("td", { text: a.problem ? `${a.state}: ${a.problem}` : a.state }),
    el("td", { text: String(a.restarts) }), el("td", { text: `${fmt(a.progress_age_s)} s ago` }),
    el("td", { class: "muted", text: a.last_error || "" })));
  replace(document.querySelector("#agents tbody"), ...rows);
  const delivery = body.delivery || {};
  const pill = document.getElementById("delivery");
  pill.textContent = delivery.guarantee || "delivery?";
  pill.dataset.state = delivery.guarantee === "exactly-once" ? "ok" : "unknown";
  pill.title = delivery.reason || "";
  const lag = body.broker_lag || [];
  const table = document.getElementById("broker-lag");
  table.hidden = lag.length === 0;  // on tansu: no real watermarks, the agents' counts stand
  replace(table.querySelector("tbody"), ...lag.map((r) => el("tr", {},
    el("td", { text: r.topic }), el("td", { text: r.group }), el("td", { text: String(r.lag) }))));
}

function setDatabase(db) {
  state.database = db;
  const box = document.getElementById("sql");
  if (!box.value) {
    box.value = `SELECT node, max(ts) AS last_seen, argMax(cpu_percent, ts_ms) AS cpu\n` +
      `FROM ${db}.telemetry_nodes GROUP BY node ORDER BY node`;
  }
}

async function runSql(ev) {
  ev.preventDefault();
  const err = document.getElementById("sql-error");
  const out = document.getElementById("sql-result");
  const { ok, body } = await api("/sql", { method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sql: document.getElementById("sql").value }) });
  err.hidden = ok;
  err.textContent = ok ? "" : body.error;
  if (!ok) { replace(out); return; }
  const rows = body.rows.slice(0, 500);
  replace(out, el("table", { class: "grid", id: "sql-table" },
    el("thead", {}, el("tr", {}, body.columns.map((c) => el("th", { text: c })))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((v) => el("td", {
      text: typeof v === "object" && v !== null ? JSON.stringify(v) : String(v) })))))),
  body.rows.length > rows.length
    ? el("div", { class: "muted", text: `first 500 of ${body.rows.length} rows` }) : null);
}

document.getElementById("sql-form").addEventListener("submit", runSql);
document.getElementById("minutes").addEventListener("change", (ev) => {
  state.minutes = Number(ev.target.value);
  refreshTimeline();
});
poll(refreshGraph, 1000);
poll(refreshCameras, 1000);
poll(refreshTimeline, 5000);
poll(refreshFeeds, 5000);
poll(refreshReady, 5000);
poll(refreshAgents, 2000);
