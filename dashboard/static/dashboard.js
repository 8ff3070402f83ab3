// The dashboard page: a snapshot, then every bus event, over one WebSocket that reconnects.
// State lives in `window.dashboard` (tests and curious operators can look).

const $ = (id) => document.getElementById(id);
const STAGES = [
  ["vad_secs", "VAD", "#a78bfa"], ["stt_secs", "STT", "#60a5fa"], ["turn_secs", "turn", "#94a3b8"],
  ["llm_secs", "LLM", "#f59e0b"], ["tts_secs", "TTS", "#34d399"],
  ["transport_secs", "transport", "#f472b6"],
];
const STALE_SECS = 6;
const ENDED_SHOWN_SECS = 60; // a finished conversation stays readable for a minute

const dash = (window.dashboard = {
  workers: {}, sessions: {}, turns: [], logs: [], acks: [], bus: {}, connected: false,
  received: [],
});
const token = takeToken();
let socket = null;
let drawPending = false;

document.querySelectorAll("nav button").forEach((button) => {
  button.addEventListener("click", () => {
    document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b === button));
    document.querySelectorAll(".tab").forEach((t) => { t.hidden = t.id !== `tab-${button.dataset.tab}`; });
  });
});
["log-level", "log-session", "log-text"].forEach((id) => $(id).addEventListener("input", draw));
$("persona-apply").addEventListener("click", () => control({
  action: "set_persona", worker: $("persona-worker").value, system_prompt: $("persona-text").value,
}));
$("reload-apply").addEventListener("click", () => control({
  action: "reload_model", worker: $("reload-worker").value, model_kind: $("reload-kind").value,
}));

connect(0);
setInterval(draw, 2000); // ages and staleness move on even without events

// The credential arrives once in the URL (?token=…); it is kept in this tab's session storage
// and taken out of the address bar and the history, so it is not shared with a copied link.
function takeToken() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem("voxline-dashboard-token", fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url);
  }
  return sessionStorage.getItem("voxline-dashboard-token");
}

function connect(attempt) {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("token", token);
  socket = new WebSocket(url);
  socket.onopen = () => { attempt = 0; dash.connected = true; setPill("feed-state", "live", "live"); };
  socket.onmessage = (e) => onMessage(JSON.parse(e.data));
  socket.onclose = (e) => {
    dash.connected = false;
    if (e.code === 4403) {
      notice(e.reason === "operator credential required"
        ? "This key may only talk: open the dashboard with …/?token=<dashboard token or operator key>."
        : "This page's origin may not open the dashboard's feed (server.allowed_origins).");
      setPill("feed-state", "closed", "refused");
      return;
    }
    if (e.code === 4401 || e.code === 4429) {
      sessionStorage.removeItem("voxline-dashboard-token");
      notice(e.code === 4429 ? `Refused: ${e.reason}.`
        : "This dashboard needs a key: open it as …/?token=<dashboard token or operator key>.");
      setPill("feed-state", "closed", "unauthorised");
      return;
    }
    setPill("feed-state", "connecting", "reconnecting…");
    setTimeout(() => connect(attempt + 1), Math.min(5000, 250 * 2 ** attempt));
  };
}

function onMessage(message) {
  if (message.type === "snapshot") {
    Object.assign(dash, { workers: message.workers, sessions: message.sessions,
                          turns: message.turns, logs: message.logs, bus: message.bus,
                          transcriptRetention: message.transcript_retention });
  } else if (message.type === "event") {
    dash.received.push({ topic: message.topic, at: Date.now() / 1000, ts: message.event.ts });
    if (dash.received.length > 500) dash.received.shift();
    apply(message.topic, message.event);
  } else if (message.type === "bus") {
    dash.bus = message;
  } else if (message.type === "error") {
    notice(message.message);
  }
  scheduleDraw();
}

function apply(topic, e) {
  const session = dash.sessions[e.session_id];
  const worker = () => (dash.workers[e.source] ||= { id: e.source });
  switch (topic) {
    case "system.service.status": worker().status = e; worker().last_seen = e.ts; break;
    case "metrics.update": worker().metrics = e; break;
    case "worker.config": worker().config = e; break;
    case "session.started":
      dash.sessions[e.session_id] = { id: e.session_id, worker: e.source, transport: e.transport,
        client: e.client, started: e.ts, ended: null, state: "listening", transcript: [], partial: "" };
      break;
    case "session.ended":
      if (session) Object.assign(session, { ended: e.ts, state: "ended" });
      // privacy.transcript_retention "none": the page forgets it too, like the collector.
      if (session && dash.transcriptRetention === "none") Object.assign(session, { transcript: [], partial: "" });
      break;
    case "voice.transcription.partial": if (session) session.partial = e.text; break;
    case "voice.transcription.complete":
      if (session) { session.partial = ""; session.transcript.push({ who: "user", text: e.text });
                     session.state = "thinking"; }
      break;
    case "tts.spoken": if (session) { session.transcript.push({ who: "bot", text: e.text });
                                      session.state = "speaking"; } break;
    case "tts.finished": if (session && session.state === "speaking") session.state = "listening"; break;
    case "turn.interrupted": if (session) session.transcript.push({ who: "note", text: "interrupted" }); break;
    case "tts.paused": if (session) { session.state = "paused"; session.transcript.push({ who: "note", text: "paused: speech over the bot" }); } break;
    case "tts.resumed": if (session) { session.state = "speaking"; session.transcript.push({ who: "note", text: "resumed: it was a backchannel" }); } break;
    case "llm.echo.guarded":
      if (session) session.transcript.push({ who: "note", text: e.attempt === 1
        ? "reply repeated the user: written again" : "reply repeated the user twice: fallback spoken" });
      break;
    case "turn.metrics": dash.turns.push(e); dash.turns = dash.turns.slice(-50); break;
    case "log": dash.logs.push(e); dash.logs = dash.logs.slice(-500); break;
    case "control.ack": dash.acks.unshift(e); break;
  }
}

function control(request) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return notice("Not connected to the dashboard.");
  socket.send(JSON.stringify({ type: "control", ...request }));
}

function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; draw(); });
}

function draw() {
  drawBus();
  drawSessions();
  drawChart();
  drawWorkers();
  drawLogs();
  drawControl();
}

function drawBus() {
  // Our own connection first (when Redis is down no worker status reaches us), then workers'.
  const now = Date.now() / 1000;
  const healths = Object.values(dash.workers).filter((w) => now - (w.last_seen || 0) < STALE_SECS)
    .map((w) => w.status?.components.find((c) => c.name === "bus")?.health).filter(Boolean);
  const health = dash.bus.health === "degraded" || healths.includes("degraded") ? "degraded"
    : dash.bus.health || healths[0] || "embedded";
  dash.busHealth = health;
  setPill("bus-state", health, `bus ${health}`);
}

function drawSessions() {
  const now = Date.now() / 1000;
  const shown = Object.values(dash.sessions).filter((s) => !s.ended || now - s.ended < ENDED_SHOWN_SECS);
  $("session-count").textContent = shown.filter((s) => !s.ended).length;
  $("sessions").replaceChildren(...shown.map((s) => {
    const card = el("div", s.ended ? "card session ended" : "card session");
    card.dataset.session = s.id;
    const head = el("div", "session-head");
    head.append(el("b", "", s.id), el("small", "",
      `${s.transport} · ${s.worker} · ${age(s.started)} · ${s.state}`));
    if (!s.ended) {
      const end = el("button", "danger", "End");
      end.onclick = () => control({ action: "end_session", worker: s.worker, session_id: s.id });
      head.append(end);
    }
    const lines = el("ol", "transcript");
    s.transcript.slice(-30).forEach((line) => lines.append(el("li", line.who, line.text)));
    if (s.partial) lines.append(el("li", "partial", s.partial));
    card.append(head, lines);
    return card;
  }));
}

function drawChart() {
  const turns = dash.turns.slice(-50);
  $("turn-count").textContent = turns.length;
  const totals = turns.map((t) => t.total_secs).sort((a, b) => a - b);
  $("p50").textContent = totals.length ? `${quantile(totals, 0.5).toFixed(2)} s` : "–";
  $("p95").textContent = totals.length ? `${quantile(totals, 0.95).toFixed(2)} s` : "–";
  const svg = $("latency-chart");
  const width = svg.clientWidth || 600, height = 200, pad = 28;
  const top = Math.max(1, ...totals) * 1.1;
  const barWidth = Math.max(2, (width - pad) / Math.max(turns.length, 10) - 2);
  // Built with DOM calls and text nodes, never markup: ids and labels come off the bus.
  const parts = [];
  for (let y = 0; y <= top; y += top > 4 ? 1 : 0.5) {
    const py = height - pad / 2 - ((height - pad) * y) / top;
    parts.push(svgEl("line", { x1: pad, x2: width, y1: py, y2: py, stroke: "#e5e7eb" }),
               svgEl("text", { x: 0, y: py + 4, "font-size": 10, fill: "#6b7280" },
                     `${y.toFixed(1)}s`));
  }
  turns.forEach((t, i) => {
    let y = height - pad / 2;
    const x = pad + i * (barWidth + 2);
    for (const [key, label, color] of STAGES) {
      const h = ((height - pad) * Number(t[key])) / top;
      y -= h;
      const bar = svgEl("rect", { class: "bar", x, y, width: barWidth, height: h, fill: color });
      bar.append(svgEl("title", {}, `${label} ${Number(t[key]).toFixed(2)} s (${t.session_id})`));
      parts.push(bar);
    }
  });
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren(...parts);
  $("chart-legend").replaceChildren(...STAGES.map(([, label, color]) => {
    const item = el("li", "", label);
    item.prepend(Object.assign(document.createElement("i"), { style: `background:${color}` }));
    return item;
  }));
}

function svgEl(name, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawWorkers() {
  $("workers").replaceChildren(...Object.values(dash.workers).map((w) => {
    const card = el("div", "card worker");
    card.dataset.worker = w.id;
    const stopped = Boolean(w.status?.stopping);  // it said it was shutting down
    const stale = stopped || Date.now() / 1000 - (w.last_seen || 0) > STALE_SECS;
    const head = el("div", "session-head");
    head.append(el("b", "", w.id));
    const pill = el("span", "pill", stopped ? "stopped" : stale ? "down" : "up");
    pill.dataset.state = stale ? "down" : "ok";
    head.append(pill);
    card.append(head);
    if (w.status) {
      const s = w.status;
      card.append(el("div", "stats",
        `CPU ${s.cpu_percent.toFixed(0)}% · RSS ${(s.rss_bytes / 2 ** 20).toFixed(0)} MB · ` +
        `up ${duration(s.uptime_secs)} · ${s.sessions_active} sessions`));
      const list = el("ul", "components");
      s.components.forEach((c) => {
        const item = el("li", "", `${c.name} ${c.model || c.detail || c.health}`);
        item.prepend(el("span", `dot ${stale ? "down" : c.health}`));
        item.title = c.detail || c.health;
        list.append(item);
      });
      card.append(list);
    }
    if (w.metrics) {
      const m = w.metrics;
      card.append(el("div", "stats", `turns ${m.turns_total} · sessions ${m.sessions_total} · ` +
                                     `errors ${m.errors_total} · bus dropped ${m.bus_dropped}`));
    }
    return card;
  }));
}

function drawLogs() {
  const order = { DEBUG: 0, INFO: 1, SUCCESS: 1, WARNING: 2, ERROR: 3, CRITICAL: 4 };
  const min = order[$("log-level").value];
  const session = $("log-session").value.trim();
  const text = $("log-text").value.trim().toLowerCase();
  const shown = dash.logs.filter((l) => (order[l.level] ?? 1) >= min
    && (!session || l.session_id.startsWith(session))
    && (!text || l.message.toLowerCase().includes(text))).slice(-300);
  $("logs").replaceChildren(...shown.map((l) =>
    el("li", l.level, `${clock(l.ts)} ${l.level.padEnd(7)} ${l.source} [${l.session_id || "-"}] ${l.message}`)));
}

function drawControl() {
  const ids = Object.keys(dash.workers);
  for (const id of ["persona-worker", "reload-worker"]) {
    const select = $(id);
    if (select.options.length !== ids.length) {
      select.replaceChildren(...ids.map((w) => Object.assign(document.createElement("option"), { value: w, textContent: w })));
    }
  }
  $("acks").replaceChildren(...dash.acks.slice(0, 30).map((a) =>
    el("li", a.ok ? "INFO" : "ERROR", `${clock(a.ts)} ${a.source}: ${a.ok ? "done" : "refused"} — ${a.message}`)));
  $("configs").replaceChildren(...Object.values(dash.workers).filter((w) => w.config).map((w) => {
    const block = el("div", "card");
    block.append(el("h3", "", w.id), el("pre", "", JSON.stringify(w.config.config, null, 2)));
    return block;
  }));
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
function setPill(id, state, label) { $(id).dataset.state = state; $(id).textContent = label; }
function notice(text) { $("notice").hidden = false; $("notice").textContent = text; }
function quantile(sorted, q) { return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]; }
function age(ts) { return duration(Date.now() / 1000 - ts); }
function duration(secs) {
  return secs < 90 ? `${secs.toFixed(0)} s` : secs < 5400 ? `${(secs / 60).toFixed(0)} min` : `${(secs / 3600).toFixed(1)} h`;
}
function clock(ts) { return new Date(ts * 1000).toLocaleTimeString(); }
