// The bus's dashboard: REST lists every 5 s, figures from /ws/monitoring every second.
// No framework and no build step: plain DOM calls. The token comes from ?access_token= or the
// sign-in field, and stays in this tab's sessionStorage.
"use strict";

const params = new URLSearchParams(location.search);
const HISTORY = 120; // chart points: two minutes of pushes
const COLORS = ["#2f6fde", "#e0632e", "#2e9d5b", "#9b4fd1", "#c9a227", "#d13b6a", "#1aa3a3"];
const state = { token: params.get("access_token") || sessionStorage.getItem("esb-token"),
  streams: [], subscriptions: [], pipelines: [], pipelineStatus: {}, latest: {},
  metrics: null, history: {}, socket: null };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fmt(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
  const answer = await fetch(path, { ...options, headers });
  if (answer.status === 401) { signOut("the token was refused: sign in again"); return null; }
  if (!answer.ok) { message(`${path}: HTTP ${answer.status}`); return null; }
  return answer.json();
}

function message(text) { document.getElementById("message").textContent = text; }

function signOut(why) {
  sessionStorage.removeItem("esb-token");
  state.token = null;
  if (state.socket) state.socket.close();
  document.getElementById("login").hidden = false;
  message(why);
}

function lagOf(topic, group) {
  const rows = (state.metrics && state.metrics.consumer_lag) || [];
  return rows.filter((r) => r.topic === topic && (!group || r.group === group))
    .reduce((sum, r) => sum + r.lag, 0);
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows);
  if (!rows.length) {
    const empty = el("tr");
    const cell = el("td", "none yet", "muted");
    cell.colSpan = document.querySelectorAll(`#${tableId} th`).length;
    empty.append(cell);
    body.append(empty);
  }
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    if (cell instanceof Node) { const td = el("td"); td.append(cell); tr.append(td); }
    else tr.append(el("td", cell.text, cell.num ? "num" : ""));
  }
  return tr;
}

function render() {
  const byStream = {};
  for (const s of (state.metrics && state.metrics.streams) || []) byStream[s.stream_id] = s;
  fill("streams", state.streams.map((s) => {
    const m = byStream[s.stream_id] || {};
    return Object.assign(row([{ text: s.stream_name }, { text: s.kafka_topic },
      { text: s.partitions, num: true }, { text: fmt(m.events_published_total), num: true },
      { text: fmt(m.events_per_s, 1), num: true },
      { text: fmt(m.publish_latency_ms && m.publish_latency_ms.p95, 1), num: true },
      { text: fmt(lagOf(s.kafka_topic)), num: true }]), { id: `stream-${s.stream_id}` });
  }));
  const bySub = {};
  for (const s of (state.metrics && state.metrics.subscriptions) || []) bySub[s.subscription_id] = s.deliveries;
  fill("subscriptions", state.subscriptions.map((s) => {
    const d = bySub[s.subscription_id] || {};
    const replay = el("button", "Replay dead letters");
    replay.onclick = () => replayDeadLetters(s.subscription_id);
    return row([{ text: s.config.subscription_name }, { text: s.state || "" },
      { text: fmt(d.delivered || 0), num: true }, { text: fmt(d.retried || 0), num: true },
      { text: fmt(d.dead_lettered || 0), num: true },
      { text: fmt(lagOf(s.kafka_topic, s.group_id)), num: true }, replay]);
  }));
  const byPipe = {};
  for (const p of (state.metrics && state.metrics.pipelines) || []) byPipe[p.pipeline_id] = p;
  fill("pipelines", state.pipelines.map((p) => {
    const m = byPipe[p.pipeline_id] || {};
    const status = state.pipelineStatus[p.pipeline_id] || {};
    const latest = state.latest[p.pipeline_id];
    return row([{ text: p.pipeline_id }, { text: status.state || (p.stopped ? "STOPPED" : "") },
      { text: fmt(m.records_in_total || 0), num: true }, { text: fmt(m.records_out_total || 0), num: true },
      { text: fmt(m.windows_emitted_total || 0), num: true }, { text: fmt(m.late_events_total || 0), num: true },
      { text: fmt(status.progress ? status.progress.lag : lagOf(p.kafka_topic)), num: true },
      { text: latest ? JSON.stringify(latest).slice(0, 80) : "" }]);
  }));
  drawChart();
}

function drawChart() {
  const canvas = document.getElementById("chart");
  const ctx = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height, pad = 30;
  ctx.clearRect(0, 0, width, height);
  const series = Object.entries(state.history);
  const top = Math.max(1, ...series.flatMap(([, points]) => points));
  ctx.strokeStyle = "#e4e6ea"; ctx.fillStyle = "#7a8190"; ctx.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = pad / 2 + ((height - pad) * i) / 4;
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(width, y); ctx.stroke();
    ctx.fillText(fmt((top * (4 - i)) / 4, 1), 0, y + 4);
  }
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  series.forEach(([name, points], index) => {
    const color = COLORS[index % COLORS.length];
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    points.forEach((value, i) => {
      const x = pad + ((width - pad) * (i + HISTORY - points.length)) / (HISTORY - 1);
      const y = pad / 2 + (height - pad) * (1 - value / top);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    const item = el("span", name); const swatch = el("i"); swatch.style.background = color;
    item.prepend(swatch); legend.append(item);
  });
}

function onMetrics(view) {
  state.metrics = view;
  document.getElementById("tenant").textContent = `tenant ${view.tenant_id}`;
  const names = {};
  for (const s of state.streams) names[s.stream_id] = s.stream_name;
  for (const s of view.streams) {
    if (s.events_per_s === null) continue;
    const points = (state.history[names[s.stream_id] || s.stream_id] ||= []);
    points.push(s.events_per_s);
    if (points.length > HISTORY) points.shift();
  }
  render();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ws/monitoring?access_token=${encodeURIComponent(state.token)}`;
  const socket = new WebSocket(url);
  state.socket = socket;
  const badge = document.getElementById("connection");
  socket.onopen = () => { badge.textContent = "live"; badge.className = "badge on"; };
  socket.onmessage = (event) => onMetrics(JSON.parse(event.data));
  socket.onclose = () => {
    badge.textContent = "offline"; badge.className = "badge off";
    if (state.token && state.socket === socket) setTimeout(connect, 3000);
  };
}

async function refreshLists() {
  if (!state.token) return;
  const [streams, subs, pipes] = await Promise.all([
    api("/api/v1/streams"), api("/api/v1/subscriptions"), api("/api/v1/pipelines")]);
  if (streams) state.streams = streams.streams;
  if (subs) state.subscriptions = subs.subscriptions;
  if (pipes) state.pipelines = pipes.pipelines;
  for (const p of state.pipelines.filter((p) => !p.stopped)) {
    const status = await api(`/api/v1/pipelines/${encodeURIComponent(p.pipeline_id)}`);
    if (status) state.pipelineStatus[p.pipeline_id] = status;
    const results = await api(`/api/v1/pipelines/${encodeURIComponent(p.pipeline_id)}/results?limit=1`);
    if (results && results.results.length) state.latest[p.pipeline_id] = results.results[0];
  }
  render();
}

async function replayDeadLetters(subscriptionId) {
  const done = await api(`/api/v1/subscriptions/${encodeURIComponent(subscriptionId)}/dlq/replay`,
    { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  if (done) message(`replay of ${subscriptionId}: ${JSON.stringify(done)}`);
}

function start() {
  document.getElementById("login").hidden = true;
  sessionStorage.setItem("esb-token", state.token);
  if (params.has("access_token")) history.replaceState(null, "", location.pathname);
  refreshLists();
  setInterval(refreshLists, 5000);
  connect();
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = document.getElementById("token").value.trim();
  if (state.token) start();
});
if (state.token) start(); else signOut("sign in with an access token (esb token create ...)");
