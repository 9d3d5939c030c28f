// Shoal's web view: polls GET /v1/mesh (304 while nothing changed) and draws
// the members, the workloads, the feed and a map of the mesh. Plain
// JavaScript, no dependencies: it must work on an offline network.
"use strict";

const POLL_MS = 1000;
const TOKEN_KEY = "shoal.token";
const $ = (id) => document.getElementById(id);

// Timings the browser tests and the benchmark read.
const timing = { firstRenderMs: null, lastUpdateMs: null, renders: 0, lastVersion: null };
window.shoalTiming = timing;

let mesh = null;          // the last /v1/mesh answer
let etag = null;
let lastOk = 0;           // Date.now() of the last answer
let selected = null;      // the workload whose detail is open
let asking = null;        // a pending token prompt
const drawn = {};         // per section, the input it was last drawn from

// ---- the API ----------------------------------------------------------

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path, options = {}) {
  for (;;) {
    const headers = Object.assign({}, options.headers || {});
    const t = token();
    if (t) headers["Authorization"] = "Bearer " + t;
    const response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
    if (response.status !== 401) return response;
    await askToken(t ? "That token was refused." : "");
  }
}

function askToken(why) {
  if (!asking) {
    asking = new Promise((done) => {
      const dialog = $("token-dialog");
      $("token-error").textContent = why;
      $("token-input").value = "";
      $("token-form").onsubmit = () => {
        const value = $("token-input").value.trim();
        if (value) sessionStorage.setItem(TOKEN_KEY, value);
        asking = null;
        done();
      };
      dialog.showModal();
    });
  }
  return asking;
}

async function errorText(response) {
  const text = await response.text();
  try { return JSON.parse(text).error || text; } catch (_) { return text || response.statusText; }
}

// ---- polling ------------------------------------------------------------

async function poll() {
  try {
    const headers = etag ? { "If-None-Match": etag } : {};
    const response = await api("/v1/mesh", { headers });
    if (response.status === 200) {
      const started = performance.now();
      const next = await response.json();
      timing.parseMs = performance.now() - started;
      etag = response.headers.get("ETag");
      mesh = next;
      render();
      const laidOut = performance.now();
      document.body.offsetHeight; // include layout in the measured time
      timing.layoutMs = performance.now() - laidOut;
      const spent = performance.now() - started;
      timing.lastUpdateMs = spent;
      timing.renders += 1;
      timing.lastVersion = next.version;
      if (timing.firstRenderMs === null) timing.firstRenderMs = performance.now();
      if (selected) showDetail(selected, false);
    } else if (response.status !== 304) {
      throw new Error(await errorText(response));
    }
    lastOk = Date.now();
    setStatus("live", "live");
  } catch (error) {
    setStatus("error", String(error.message || error));
  }
  setTimeout(poll, POLL_MS);
}

function setStatus(kind, text) {
  const status = $("status");
  status.className = "status " + kind;
  status.textContent = text;
}

// ---- rendering ----------------------------------------------------------

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
}

function cores(millis) { return millis % 1000 === 0 ? millis / 1000 + "" : (millis / 1000).toFixed(2); }

function ago(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + (s % 60) + "s";
  const h = Math.floor(m / 60);
  if (h < 48) return h + "h " + (m % 60) + "m";
  return Math.floor(h / 24) + "d";
}

// The agent's clock, from ours: what it said its time was, and when.
function agentNow() { return mesh ? mesh.now_ms + (Date.now() - lastRenderedAt) : Date.now(); }
let lastRenderedAt = Date.now();

function bar(used, total) {
  const pct = total > 0 ? Math.min(100, Math.round((100 * used) / total)) : 0;
  return `<span class="bar" title="${pct}%"><i class="w${Math.round(pct / 5) * 5}"></i></span>`;
}

function render() {
  lastRenderedAt = Date.now();
  const m = mesh;
  $("agent").textContent = "via " + m.agent;
  const states = {};
  for (const member of m.members) states[member.state] = (states[member.state] || 0) + 1;
  const running = m.workloads.filter((w) => w.state === "running").length;
  $("summary").textContent = `${m.members.length} members (` +
    ["alive", "suspect", "dead", "left"].filter((s) => states[s]).map((s) => `${states[s]} ${s}`).join(", ") +
    `) · ${m.workloads.length} workloads (${running} running)`;
  // Each section is drawn again only when what it shows changed.
  const keysStarted = performance.now();
  const membersKey = JSON.stringify(m.members);
  const workloadsKey = JSON.stringify(m.workloads);
  const t0 = performance.now();
  if (drawn.map !== membersKey + workloadsKey) { drawn.map = membersKey + workloadsKey; drawMap(); }
  const t1 = performance.now();
  timing.mapMs = t1 - t0;
  if (drawn.members !== membersKey + $("member-filter").value) {
    drawn.members = membersKey + $("member-filter").value;
    drawMembers();
  }
  if (drawn.workloads !== workloadsKey + membersKey + $("workload-filter").value) {
    drawn.workloads = workloadsKey + membersKey + $("workload-filter").value;
    drawWorkloads();
  }
  const t2 = performance.now();
  timing.tablesMs = t2 - t1;
  drawFeed();
  tick();
  timing.feedMs = performance.now() - t2;
  timing.keysMs = t0 - keysStarted;
}

function matches(filter, text, labels) {
  const words = filter.trim().toLowerCase().split(/\s+/).filter(Boolean);
  return words.every((word) => {
    const eq = word.indexOf("=");
    if (eq > 0 && labels) {
      const v = labels[word.slice(0, eq)];
      return v !== undefined && v.toLowerCase() === word.slice(eq + 1);
    }
    return text.includes(word);
  });
}

// A table body that holds only the rows in view: every row is one line of
// ROW_PX, and two spacer rows stand for the rest. 1,000 rows cost what 60 do.
const ROW_PX = 24;
const OVERSCAN = 20;

class VirtualRows {
  constructor(table) {
    this.tbody = table.tBodies[0];
    this.box = table.parentElement;
    this.columns = table.tHead.rows[0].cells.length;
    this.rows = [];
    this.first = -1;
    this.last = -1;
    // The box's geometry, read only when it scrolls or resizes: reading it
    // after a write would force a layout of the whole page.
    this.top = 0;
    this.height = 800;
    const measure = () => {
      this.top = this.box.scrollTop;
      this.height = this.box.clientHeight || 800;
    };
    this.box.addEventListener("scroll", () => { measure(); this.draw(false); tick(); }, { passive: true });
    window.addEventListener("resize", () => { measure(); this.draw(false); });
    measure();
  }

  set(rows) {
    this.rows = rows;
    this.draw(true);
  }

  draw(force) {
    const top = this.top;
    const height = this.height;
    const first = Math.max(0, Math.floor(top / ROW_PX) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW_PX) + OVERSCAN);
    if (!force && first === this.first && last === this.last) return;
    this.first = first;
    this.last = last;
    const spacer = `<tr class="spacer"><td colspan="${this.columns}"></td></tr>`;
    this.tbody.innerHTML = spacer + this.rows.slice(first, last).join("") + spacer;
    this.tbody.firstChild.style.height = first * ROW_PX + "px";
    this.tbody.lastChild.style.height = (this.rows.length - last) * ROW_PX + "px";
  }
}

let memberRows = null;
let workloadRows = null;

function drawMembers() {
  const filter = $("member-filter").value;
  const rows = [];
  let shown = 0;
  for (const m of mesh.members) {
    const labels = Object.entries(m.labels).map(([k, v]) => `${k}=${v}`);
    const text = `${m.name} ${m.state} ${m.addr} ${labels.join(" ")}`.toLowerCase();
    if (filter && !matches(filter, text, m.labels)) continue;
    shown++;
    const labelText = labels.join(", ");
    rows.push(`<tr data-name="${esc(m.name)}"><td title="${esc(m.name)} · ${esc(m.addr)} · ${esc(m.id)}">${esc(m.name)}</td>` +
      `<td class="state ${m.state}">${m.state}</td>` +
      `<td class="since" data-since="${m.since_ms}"></td>` +
      `<td>${bar(m.cpu_used, m.cpu)}${cores(m.cpu_used)} / ${cores(m.cpu)}</td>` +
      `<td>${bar(m.memory_used, m.memory)}${bytes(m.memory_used)} / ${bytes(m.memory)}</td>` +
      `<td>${m.replicas}</td><td>${m.generation}</td>` +
      `<td title="${esc(labelText)}">${labels.map((l) => `<span class="label">${esc(l)}</span>`).join("")}</td></tr>`);
  }
  memberRows = memberRows || new VirtualRows($("members"));
  memberRows.set(rows);
  $("members-count").textContent = filter ? `${shown} of ${mesh.members.length}` : `${mesh.members.length}`;
}

function replicaChips(w) {
  return w.placement.map((r) => {
    const node = r.node === undefined ? "no node" : mesh.members[r.node].name;
    return `<span class="rep ${esc(r.state)}"><i></i>${esc(node)}</span>`;
  }).join("");
}

function drawWorkloads() {
  const filter = $("workload-filter").value;
  const rows = [];
  let shown = 0;
  for (const w of mesh.workloads) {
    if (filter) {
      const nodes = w.placement.map((r) => (r.node === undefined ? "" : mesh.members[r.node].name)).join(" ");
      if (!matches(filter, `${w.name} ${w.state} ${nodes}`.toLowerCase(), null)) continue;
    }
    shown++;
    const why = w.unplaced ? ` <span class="why">${esc(w.unplaced)}</span>` : "";
    const reserve = w.cpu || w.memory ? `${cores(w.cpu)} CPU, ${bytes(w.memory)}` : "nothing";
    const where = w.placement.map((r) => `${r.node === undefined ? "no node" : mesh.members[r.node].name}: ${r.state}`).join(", ");
    rows.push(`<tr data-name="${esc(w.name)}"><td title="${esc(w.name)}">${esc(w.name)}</td>` +
      `<td class="state ${esc(w.state)}" title="${esc(w.unplaced || w.state)}">${esc(w.state)}</td>` +
      `<td>${w.running} / ${w.replicas}</td>` +
      `<td title="${esc(where + (w.unplaced ? " · " + w.unplaced : ""))}">${replicaChips(w)}${why}</td>` +
      `<td class="muted">${reserve}</td></tr>`);
  }
  workloadRows = workloadRows || new VirtualRows($("workloads"));
  workloadRows.set(rows);
  $("workloads-count").textContent = filter ? `${shown} of ${mesh.workloads.length}` : `${mesh.workloads.length}`;
}

function drawFeed() {
  const key = mesh.feed.length ? mesh.feed[mesh.feed.length - 1].at_ms + ":" + mesh.feed.length : "";
  if (drawn.feed === key) return;
  drawn.feed = key;
  const items = mesh.feed.slice().reverse().map((f) =>
    `<li><span class="when" data-at="${f.at_ms}"></span><span class="subject">${esc(f.subject)}</span>${esc(f.what)}</li>`);
  $("feed").innerHTML = items.length ? items.join("") : `<li class="muted">nothing has changed since this agent started watching</li>`;
}

// Times that move: the time in state, and the feed's "ago".
function tick() {
  if (!mesh) return;
  const now = agentNow();
  for (const cell of document.querySelectorAll("td.since")) {
    const text = ago(now - Number(cell.dataset.since));
    if (cell.textContent !== text) cell.textContent = text;
  }
  for (const cell of document.querySelectorAll("#feed .when")) {
    const text = ago(now - Number(cell.dataset.at)) + " ago";
    if (cell.textContent !== text) cell.textContent = text;
  }
  if (lastOk && Date.now() - lastOk > 5 * POLL_MS) setStatus("stale", "no answer for " + ago(Date.now() - lastOk));
}

// ---- the map ------------------------------------------------------------

// The map is drawn whole when its layout changes (members, zones, sizes);
// otherwise only the nodes whose drawing changed are replaced.
const mapState = { layout: null, nodes: [], elements: [] };

function drawMap() {
  const members = mesh.members;
  const zones = new Map();
  members.forEach((m, i) => {
    const zone = m.labels.zone || "no zone label";
    if (!zones.has(zone)) zones.set(zone, []);
    zones.get(zone).push(i);
  });
  const onNode = members.map(() => []);
  for (const w of mesh.workloads) {
    for (const r of w.placement) if (r.node !== undefined) onNode[r.node].push([w.name, r.replica, r.state]);
  }
  const n = Math.max(1, members.length);
  const svg = $("map");
  const SVG_WIDTH = Math.max(600, svg.clientWidth || 1100);
  // Cells as large as the room allows, for about 420 px of height.
  const cell = Math.max(16, Math.min(130, Math.floor(0.75 * Math.sqrt((SVG_WIDTH * 420) / n))));
  const maxCpu = Math.max(1, ...members.map((m) => m.cpu));
  const layout = JSON.stringify([SVG_WIDTH, cell, maxCpu, [...zones.entries()], members.map((m) => m.name)]);
  const parts = [];
  const nodes = new Array(members.length);
  let x = 0, y = 0, rowHeight = 0;
  const names = [...zones.keys()].sort();
  for (const zone of names) {
    const ids = zones.get(zone);
    // A small mesh in rows, a large one in squarish blocks.
    const wanted = n <= 24 ? ids.length : Math.ceil(Math.sqrt(ids.length * 2));
    const cols = Math.max(1, Math.min(Math.floor((SVG_WIDTH - 20) / cell), wanted));
    const rows = Math.ceil(ids.length / cols);
    const width = cols * cell + 16, height = rows * cell + 28;
    if (x > 0 && x + width > SVG_WIDTH) { x = 0; y += rowHeight + 10; rowHeight = 0; }
    parts.push(`<g class="zone" transform="translate(${x},${y})"><rect width="${width}" height="${height}" rx="6"></rect>` +
      `<text x="8" y="16">${esc(zone)} · ${ids.length}</text>`);
    ids.forEach((i, k) => {
      const cx = 8 + (k % cols) * cell + cell / 2, cy = 24 + Math.floor(k / cols) * cell + cell / 2;
      nodes[i] = drawNode(members[i], onNode[i], cx, cy, cell, maxCpu, i);
      parts.push(nodes[i]);
    });
    parts.push("</g>");
    x += width + 10;
    rowHeight = Math.max(rowHeight, height);
  }
  if (layout === mapState.layout) {
    nodes.forEach((drawing, i) => {
      if (drawing !== mapState.nodes[i]) {
        const old = mapState.elements[i];
        old.insertAdjacentHTML("afterend", drawing);
        mapState.elements[i] = old.nextElementSibling;
        old.remove();
      }
    });
    mapState.nodes = nodes;
    return;
  }
  const total = y + rowHeight + 2;
  svg.setAttribute("viewBox", `0 0 ${SVG_WIDTH} ${total}`);
  svg.setAttribute("height", Math.min(total, 560));
  // The feed beside the map is as tall as the map.
  $("feed").style.maxHeight = Math.max(340, Math.min(total, 560)) + "px";
  svg.innerHTML = parts.join("");
  const elements = new Array(members.length);
  for (const g of svg.querySelectorAll("g.node")) elements[Number(g.dataset.index)] = g;
  Object.assign(mapState, { layout, nodes, elements });
}

const STATE_COLOURS = { alive: "#2f9e6e", suspect: "#e0a030", dead: "#d64545", left: "#9aa0a6" };
const REPLICA_COLOURS = { running: "#2459b3", failed: "#d64545" };

function drawNode(m, replicas, cx, cy, cell, maxCpu, index) {
  const labelled = cell >= 60;
  const rMax = (labelled ? cell * 0.34 : cell * 0.4) - 3;
  const r = Math.max(rMax * 0.4, rMax * Math.sqrt(m.cpu / maxCpu));
  const ny = labelled ? cy - 6 : cy;
  const list = replicas.map(([w, i, s]) => `${w}/${i} ${s}`).join(", ");
  const title = `${m.name} · ${m.state} · CPU ${cores(m.cpu_used)}/${cores(m.cpu)} · ${bytes(m.memory_used)}/${bytes(m.memory)}` +
    (replicas.length ? ` · ${replicas.length} replicas: ${list}` : " · no replicas");
  let out = `<g class="node" data-index="${index}" data-name="${esc(m.name)}"><title>${esc(title)}</title>` +
    `<circle cx="${cx}" cy="${ny}" r="${r.toFixed(1)}" fill="${STATE_COLOURS[m.state] || "#999"}"></circle>`;
  if (replicas.length && cell >= 30 && replicas.length <= 16) {
    replicas.forEach(([, , state], k) => {
      const a = (2 * Math.PI * k) / replicas.length - Math.PI / 2;
      const dot = Math.max(2.4, cell / 26);
      const px = cx + Math.cos(a) * (r + dot + 1), py = ny + Math.sin(a) * (r + dot + 1);
      out += `<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="${dot.toFixed(1)}" fill="${REPLICA_COLOURS[state] || "#9db7e3"}" stroke="#fff" stroke-width="0.8"></circle>`;
    });
  }
  if (replicas.length && r >= 7) out += `<text class="count" x="${cx}" y="${ny + 3.5}">${replicas.length}</text>`;
  if (labelled) out += `<text x="${cx}" y="${cy + cell / 2 - 4}">${esc(m.name.length > 12 ? m.name.slice(0, 11) + "…" : m.name)}</text>`;
  return out + "</g>";
}

// ---- a workload's detail, submit and delete ----------------------------

async function showDetail(name, scroll) {
  selected = name;
  const response = await api("/v1/workloads/" + encodeURIComponent(name));
  if (selected !== name) return;
  if (response.status === 404) { closeDetail(); return; }
  if (!response.ok) { notice(await errorText(response)); return; }
  const d = await response.json();
  $("workload-detail").hidden = false;
  $("detail-name").textContent = d.name;
  $("detail-summary").textContent = `${d.state}: ${d.running} of ${d.replicas} running · version ${d.clock} by ${d.written_by}` +
    (d.unplaced ? " · " + d.unplaced : "");
  $("detail-replicas").tBodies[0].innerHTML = d.placement.map((r) =>
    `<tr><td>${r.replica}</td><td>${esc(r.node || "no node")}${r.elsewhere ? ` <span class="muted">(also ${esc(r.elsewhere.join(", "))})</span>` : ""}</td>` +
    `<td class="state ${esc(r.state)}">${esc(r.state)}</td><td>${r.restarts}</td><td>${esc(r.detail || "")}</td></tr>`).join("");
  const events = d.events || [];
  $("detail-events").innerHTML = events.length
    ? events.slice().reverse().map((e) => `<li><span class="when">${ago(e.secs_ago * 1000)} ago</span>${esc(e.what)}</li>`).join("")
    : `<li class="muted">none yet</li>`;
  $("detail-spec").textContent = JSON.stringify(d.spec, null, 2);
  if (scroll) $("workload-detail").scrollIntoView({ block: "nearest" });
}

function closeDetail() { selected = null; $("workload-detail").hidden = true; }

let noticeTimer = null;
function notice(text) {
  const box = $("notice");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { box.hidden = true; }, 6000);
}

async function submitSpec(event) {
  event.preventDefault();
  $("submit-error").textContent = "";
  const response = await api("/v1/workloads", {
    method: "POST", headers: { "Content-Type": "application/toml" }, body: $("spec").value,
  });
  if (response.status === 200 || response.status === 201) {
    const d = await response.json();
    $("submit-dialog").close();
    notice(`workload ${d.name} ${response.status === 201 ? "submitted" : "replaced"}`);
    showDetail(d.name, true);
  } else {
    $("submit-error").textContent = await errorText(response);
  }
}

async function deleteSelected() {
  const name = selected;
  if (!name || !confirm(`Delete workload ${name} everywhere? Every replica stops.`)) return;
  const response = await api("/v1/workloads/" + encodeURIComponent(name), { method: "DELETE" });
  if (response.ok) { closeDetail(); notice(`workload ${name} deleted`); } else notice(await errorText(response));
}

// ---- wiring -----------------------------------------------------------------

function start() {
  $("member-filter").addEventListener("input", () => mesh && render());
  $("workload-filter").addEventListener("input", () => mesh && render());
  $("workloads").tBodies[0].addEventListener("click", (e) => {
    const row = e.target.closest("tr[data-name]");
    if (row) showDetail(row.dataset.name, true);
  });
  $("map").addEventListener("click", (e) => {
    const node = e.target.closest(".node");
    if (node) { $("member-filter").value = node.dataset.name; render(); }
  });
  $("new-workload").addEventListener("click", () => { $("submit-error").textContent = ""; $("submit-dialog").showModal(); });
  $("submit-cancel").addEventListener("click", () => $("submit-dialog").close());
  $("submit-form").addEventListener("submit", submitSpec);
  $("detail-close").addEventListener("click", closeDetail);
  $("detail-delete").addEventListener("click", deleteSelected);
  setInterval(tick, 1000);
  poll();
}

start();
