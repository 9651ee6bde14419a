// Sluice status page: polls the read-only admin routes of the node that
// serves it and draws what they say. Every value from the server goes into
// the page as text (never as HTML): keys are whatever clients sent.
"use strict";

const POLL_MS = 2000;
const POINTS = 60; // sparkline length: two minutes of polls

// rule → {last: {t, total, denied}, decisions: [], denied: []}
const series = new Map();

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function text(id, value) { document.getElementById(id).textContent = value; }

function fill(tbody, rows, cols, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", {colspan: cols, class: "empty"}, empty))]));
}

// get fetches a JSON route; a 401 means the session ended: back to sign-in.
async function get(path) {
  const res = await fetch(path, {credentials: "same-origin", cache: "no-store"});
  if (res.status === 401) {
    location.assign("/ui");
    throw new Error("signed out");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(path + ": " + (body.error || res.status)), {status: res.status});
  return body;
}

function fmtRate(v) {
  if (v >= 100) return Math.round(v).toLocaleString("en-US");
  return v.toFixed(v >= 10 ? 1 : 2);
}

function fmtCount(v) { return Number(v).toLocaleString("en-US"); }

// sparkline draws values (≥ 0) as a line over a faint area, scaled to their
// own maximum; the title says the latest value.
function sparkline(values, cls) {
  const w = 140, h = 28, peak = Math.max(...values, 0), max = peak * 1.15 || 1;
  const step = w / Math.max(values.length - 1, 1);
  const pts = values.map((v, i) => [i * step, h - 1 - (v / max) * (h - 2)]);
  const line = pts.map(([x, y], i) => (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1)).join(" ");
  const s = svg("svg", {class: "spark", viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none", role: "img"});
  const title = svg("title", {});
  title.textContent = values.length ? `peak ${fmtRate(peak)}/s over ${values.length} polls` : "waiting for a second poll";
  s.append(title);
  if (pts.length > 1) {
    s.append(svg("path", {class: "area " + cls, d: `${line} L${w} ${h} L0 ${h} Z`}));
    s.append(svg("path", {class: cls, d: line}));
  }
  return s;
}

// record turns this node's counters into rates since the previous poll,
// timed by the node's clock (time_ms), not the browser's.
function record(node) {
  const now = node.time_ms;
  for (const [rule, byResult] of Object.entries(node.decisions || {})) {
    if (rule === "") continue;
    const denied = (byResult.denied || 0) + (byResult.shadow_denied || 0);
    const total = (byResult.allowed || 0) + denied;
    let s = series.get(rule);
    if (!s) series.set(rule, s = {decisions: [], denied: []});
    if (s.last && now > s.last.t && total >= s.last.total) {
      const dt = (now - s.last.t) / 1000;
      s.decisions.push((total - s.last.total) / dt);
      s.denied.push(Math.max(0, denied - s.last.denied) / dt);
      if (s.decisions.length > POINTS) { s.decisions.shift(); s.denied.shift(); }
    }
    s.last = {t: now, total, denied};
  }
}

function renderNode(node) {
  text("node-id", node.id);
  const mode = document.getElementById("decision-mode");
  mode.textContent = node.mode;
  mode.className = "pill " + node.mode;
  text("redis-mode", node.redis);
}

function renderCluster(c) {
  text("leader", c.leader || "none");
  text("term", c.term);
  text("rules-version", c.rules_version);
  const rows = (c.nodes || []).map(n => el("tr", {"data-member": n.id},
    el("td", {class: "mono"}, n.id),
    el("td", {}, n.state === "leader" ? el("span", {class: "tag leader"}, "leader") : n.state),
    el("td", {}, n.voter ? "voter" : "non-voter"),
    el("td", {}, el("span", {class: n.healthy ? "dot" : "dot bad"}), n.healthy ? "healthy" : "unhealthy"),
    el("td", {class: "mono", title: "raft " + n.raft_addr}, n.http_addr)));
  fill(document.querySelector("#members tbody"), rows, 5, "no members");
  return c.warning || "";
}

function describeLimit(r) {
  if (r.limit) return `${r.limit.rate} per ${r.limit.per}, burst ${r.limit.burst || r.limit.rate}`;
  if (r.quota) return `quota ${r.quota.limit} per ${r.quota.per}`;
  return "";
}

// renderRules lists the rules with this node's rates and counts and, when
// the node serves /v1/top, the whole cluster's counts over the last minute.
function renderRules(doc, node, top) {
  const list = Array.isArray(doc.rules) ? doc.rules : (doc.rules && doc.rules.rules) || [];
  const cluster = new Map((top.rules || []).map(r => [r.rule, r]));
  const rows = list.map(r => {
    const c = cluster.get(r.name);
    const s = series.get(r.name) || {decisions: [], denied: [], last: {total: 0, denied: 0}};
    const last = a => a.length ? a[a.length - 1] : 0;
    const name = el("td", {class: "mono"}, r.name, ...(r.shadow ? [el("span", {class: "tag"}, "shadow")] : []));
    return el("tr", {"data-rule": r.name}, name,
      el("td", {}, describeLimit(r)),
      el("td", {class: "num rate-decisions"}, fmtRate(last(s.decisions))),
      el("td", {}, sparkline(s.decisions, "decisions")),
      el("td", {class: "num rate-denied denied"}, fmtRate(last(s.denied))),
      el("td", {}, sparkline(s.denied, "denied")),
      el("td", {class: "num total"}, fmtCount(s.last ? s.last.total : 0)),
      el("td", {class: "num total-denied"}, fmtCount(s.last ? s.last.denied : 0)),
      el("td", {class: "num cluster-minute"}, c ? `${fmtCount(c.denied)} of ${fmtCount(c.admitted + c.denied)}` : "–"));
  });
  fill(document.querySelector("#rules tbody"), rows, 9, node ? "no rules" : "…");
}

function renderLeases(leases, members) {
  const ids = members.length ? members : [...new Set(Object.values(leases).flatMap(Object.keys))].sort();
  document.querySelector("#leases thead tr").replaceChildren(el("th", {}, "rule"),
    ...ids.map(id => el("th", {class: "num node-id"}, id)));
  const rows = Object.keys(leases).sort().map(rule => el("tr", {"data-lease-rule": rule},
    el("td", {class: "mono"}, rule),
    ...ids.map(id => {
      const l = leases[rule][id];
      if (!l) return el("td", {class: "num muted"}, "–");
      const pct = (l.share * 100).toFixed(l.share < 0.1 ? 2 : 1) + "%";
      return el("td", {class: "num", "data-node": id, title: `expires in ${(l.expires_in_ms / 1000).toFixed(1)} s`},
        pct, ...(l.withheld ? [el("span", {class: "tag withheld"}, "withheld")] : []));
    })));
  fill(document.querySelector("#leases tbody"), rows, ids.length + 1, "no leases (one node, or no limit rules)");
}

function renderTop(top) {
  const note = document.getElementById("top-note");
  const tbody = document.querySelector("#top tbody");
  if (top.unavailable) {
    note.textContent = "Top keys not available: " + top.unavailable;
    tbody.replaceChildren();
    return;
  }
  note.textContent = top.missing && top.missing.length ? "No answer from " + top.missing.join(", ") + "; counts are partial." : "";
  const rows = [];
  for (const r of top.rules || []) {
    for (const k of r.keys || []) {
      if (!k.denied) continue;
      rows.push(el("tr", {"data-top-rule": r.rule, "data-top-key": k.key},
        el("td", {class: "mono"}, r.rule),
        el("td", {class: "mono"}, k.key),
        el("td", {class: "num denied"}, fmtCount(k.denied) + (k.error ? " ±" + fmtCount(k.error) : "")),
        el("td", {class: "num"}, fmtCount(k.admitted)),
        el("td", {class: "mono"}, (k.nodes || []).join(", "))));
    }
  }
  fill(tbody, rows, 5, "no denials in the last minute");
}

async function getTop() {
  try {
    return await get("/v1/top?window=1m&by=denied&k=10");
  } catch (e) {
    if (e.status === 404) return {unavailable: "this node does not serve /v1/top"};
    return {unavailable: e.message};
  }
}

async function poll() {
  const problems = [];
  const settle = p => p.catch(e => { problems.push(e.message); return null; });
  const [cluster, node, rules, leases, top] = await Promise.all([
    settle(get("/v1/cluster")), settle(get("/v1/node")), settle(get("/v1/rules")),
    settle(get("/v1/leases")), getTop()]);
  if (node) { record(node); renderNode(node); }
  if (cluster) problems.push(renderCluster(cluster));
  if (rules) renderRules(rules, node, top);
  if (leases) renderLeases(leases, cluster ? cluster.nodes.map(n => n.id) : []);
  renderTop(top);
  const banner = document.getElementById("banner");
  const msg = problems.filter(Boolean).join(" · ");
  banner.textContent = msg;
  banner.hidden = !msg;
  text("updated", new Date().toLocaleTimeString("en-GB"));
}

async function loop() {
  try { await poll(); } catch (e) { /* shown in the banner on the next poll */ }
  setTimeout(loop, POLL_MS);
}

loop();
