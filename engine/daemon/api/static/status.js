// The status page: reads the daemon's own API once a second and fills the tables. Values are
// written with textContent only, so nothing the daemon reports can inject markup.
"use strict";

const API = "/api/v1";
const OPEN_STATUSES = ["pending", "open", "partially_filled"];

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fill(tableId, rows, empty) {
  const body = document.querySelector("#" + tableId + " tbody");
  const cols = document.querySelectorAll("#" + tableId + " thead th").length || 2;
  const out = [];
  for (const cells of rows) {
    const tr = el("tr");
    for (const c of cells) {
      let td;
      if (typeof c === "number") td = el("td", num(c), "num");
      else if (typeof c === "object" && c !== null) td = el("td", c.text, c.cls);
      else td = el("td", c);
      tr.appendChild(td);
    }
    out.push(tr);
  }
  if (!out.length) {
    const tr = el("tr");
    const td = el("td", empty || "none", "muted");
    td.colSpan = cols;
    tr.appendChild(td);
    out.push(tr);
  }
  body.replaceChildren(...out);
}

function num(x) {
  // 10 significant digits: prices and quantities keep theirs, float noise goes
  return Number.isInteger(x) ? String(x) : String(parseFloat(x.toPrecision(10)));
}

function fmt(x, digits) {
  if (x === null || x === undefined || x === "") return "";
  if (typeof x === "number") return digits === undefined ? String(x) : x.toFixed(digits);
  return String(x);
}

function duration(s) {
  if (typeof s !== "number") return "";
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + sec + "s";
}

async function getJSON(path) {
  const r = await fetch(API + path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await r.json().catch(() => ({ error: "not JSON (HTTP " + r.status + ")" }));
  if (!r.ok) throw new Error(path + ": " + (body.error || "HTTP " + r.status));
  return body;
}

async function getLatency() {
  // JSON lines; latency lines carry p50/p99/p999 in µs
  const r = await fetch(API + "/metrics", { headers: { Accept: "application/x-ndjson" }, cache: "no-store" });
  if (!r.ok) throw new Error("/metrics: HTTP " + r.status);
  const lines = (await r.text()).split("\n").filter((l) => l.trim());
  const out = [];
  for (const line of lines) {
    try {
      const m = JSON.parse(line);
      if (typeof m.name === "string" && "p99" in m) out.push(m);
    } catch (e) { /* not a JSON line: skip */ }
  }
  return out;
}

function renderStatus(s) {
  document.getElementById("mode").textContent = s.mode ? "(" + s.mode + ")" : "";
  document.getElementById("daemon-status").textContent = fmt(s.status);
  const te = document.getElementById("trading-enabled");
  te.textContent = s.trading_enabled ? "enabled" : "DISABLED";
  te.className = s.trading_enabled ? "ok" : "bad";
  document.getElementById("version").textContent = fmt(s.version);
  document.getElementById("pid").textContent = fmt(s.pid);
  document.getElementById("uptime").textContent = duration(s.uptime_s);
  document.getElementById("open-orders-count").textContent = fmt(s.open_orders);
  const rows = [];
  for (const [name, ex] of Object.entries(s.exchanges || {})) {
    const books = Object.entries(ex.books || {}).map(([sym, b]) =>
      sym + (b.valid ? " ok" : " INVALID" + (b.reason ? " (" + b.reason + ")" : "")) +
      (typeof b.age_ms === "number" ? " " + Math.round(b.age_ms) + " ms" : ""));
    const st = ex.status || "";
    rows.push([name, { text: st, cls: st === "connected" ? "ok" : "bad" }, books.join(", "),
      ex.reconnects ?? "", ex.sequence_gaps ?? ""]);
  }
  fill("exchanges", rows, "no exchange");
}

function renderRisk(r) {
  const flat = {};
  const walk = (prefix, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(prefix ? prefix + "." + k : k, x);
    } else {
      flat[prefix] = v;
    }
  };
  walk("", r);
  const rows = [];
  for (const [k, v] of Object.entries(flat)) {
    // a strategy's limit equal to the global one says nothing new
    const m = /^strategies\.[^.]+\.limits\.(.+)$/.exec(k);
    if (m && ("limits." + m[1]) in flat && flat["limits." + m[1]] === v) continue;
    rows.push([k, Array.isArray(v) ? JSON.stringify(v) : typeof v === "number" ? v : fmt(v)]);
  }
  fill("risk", rows, "no risk figures");
}

const sections = {
  status: async () => renderStatus(await getJSON("/status")),
  strategies: async () => {
    const s = await getJSON("/strategies");
    fill("strategies", (s.strategies || []).map((x) => [x.strategy_id,
      { text: x.status, cls: x.status === "running" ? "ok" : "bad" }, fmt(x.venue),
      Array.isArray(x.symbols) ? x.symbols.join(", ") : fmt(x.symbols)]), "no strategy");
  },
  positions: async () => {
    const p = await getJSON("/positions");
    fill("positions", (p.positions || []).map((x) => [x.strategy ?? x.strategy_id, fmt(x.exchange), x.symbol,
      x.quantity, x.avg_price, x.notional_usd, x.unrealized_pnl]), "flat");
  },
  orders: async () => {
    const lists = await Promise.all(OPEN_STATUSES.map((st) => getJSON("/orders?status=" + st + "&limit=200")));
    const orders = lists.flatMap((l) => l.orders || []);
    orders.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    fill("orders", orders.map((o) => [o.order_id, o.strategy_id, o.symbol, o.side, o.price, o.quantity,
      o.filled_quantity, o.status, fmt(o.created_at)]), "no open order");
  },
  risk: async () => renderRisk(await getJSON("/risk/summary")),
  latency: async () => {
    const l = await getLatency();
    fill("latency", l.map((m) => [m.name, m.p50, m.p99, m.p999, m.count]), "no latency recorded yet");
  },
  incidents: async () => {
    const i = await getJSON("/incidents?limit=20");
    fill("incidents", (i.incidents || []).map((x) => [fmt(x.ts), fmt(x.venue), fmt(x.symbol), x.kind,
      fmt(x.detail)]), "no incident");
  },
};

async function refresh() {
  const names = Object.keys(sections);
  const results = await Promise.allSettled(names.map((n) => sections[n]()));
  const errors = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
  const banner = document.getElementById("banner");
  banner.textContent = errors.join("; ");
  banner.style.display = errors.length ? "block" : "none";
  document.getElementById("updated").textContent = new Date().toISOString();
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}

async function loop() {
  await refresh();
  setTimeout(loop, 1000);
}

loop();
