// The talk page: one RTCPeerConnection to voxline, events over its data channel.
// No build step; state lives in `window.voxline` so tests (and curious users) can look.

const $ = (id) => document.getElementById(id);
const STAGES = [
  ["vad_secs", "end of speech", "#a78bfa"],
  ["stt_secs", "STT", "#60a5fa"],
  ["turn_secs", "turn", "#94a3b8"],
  ["llm_secs", "LLM", "#f59e0b"],
  ["tts_secs", "TTS", "#34d399"],
  ["transport_secs", "transport", "#f472b6"],
];

const voxline = (window.voxline = { events: [], pc: null, sessionId: null, micLevel: 0 });
// An API key given as the page's own ?token= (when the server requires keys) goes with every
// request as a header, so it never lands in server or proxy request logs.
const token = takeToken();

// The key is kept in this tab's session storage and taken out of the address bar and the
// history, so a copied link or a screenshot does not carry it.
function takeToken() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem("voxline-token", fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url);
  }
  return sessionStorage.getItem("voxline-token");
}
let channel = null;
let pingTimer = null;
let meterFrame = null;
let botItem = null; // the <li> the bot's current reply is written into

$("talk").addEventListener("click", () => start().catch(fail));
$("hangup").addEventListener("click", () => hangUp("hung up"));

async function start() {
  showError(null);
  setConnState("connecting", "connecting…");
  $("talk").disabled = true;
  const mic = await openMicrophone();
  const config = await fetchJson("/api/config");
  const pc = new RTCPeerConnection({ iceServers: config.iceServers });
  voxline.pc = pc;
  pc.addTransceiver(mic.getAudioTracks()[0], { direction: "sendrecv" });
  pc.ontrack = (e) => { $("bot-audio").srcObject = e.streams[0] || new MediaStream([e.track]); };
  pc.onconnectionstatechange = () => onPeerState(pc.connectionState);
  pc.oniceconnectionstatechange = () => {
    if (pc.iceConnectionState === "failed") {
      fail(new Error("Could not reach the server's audio (ICE failed). Behind NAT or a firewall? " +
                     "Configure a TURN server (webrtc.ice_servers)."));
    }
  };
  channel = pc.createDataChannel("events", { ordered: true });
  channel.onmessage = (e) => onEvent(JSON.parse(e.data));
  channel.onopen = () => {
    channel.send("ping"); // at once: the server hangs up on a peer that pinged, then went silent
    pingTimer = setInterval(() => channel.send("ping"), 1000);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await iceGatheringDone(pc);
  const answer = await fetchJson("/api/offer", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }),
  });
  voxline.pcId = answer.pc_id;
  await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  meter(mic);
  $("hangup").disabled = false;
}

async function openMicrophone() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error("This browser cannot use a microphone here. Open the page over HTTPS " +
                    "(or on localhost).");
  }
  try {
    voxline.mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    return voxline.mic;
  } catch (e) {
    if (e.name === "NotAllowedError" || e.name === "SecurityError") {
      throw new Error("Microphone access was denied. Allow the microphone for this site and " +
                      "click Talk again.");
    }
    if (e.name === "NotFoundError" || e.name === "OverconstrainedError") {
      throw new Error("No microphone was found. Plug one in and click Talk again.");
    }
    throw new Error(`The microphone could not be opened (${e.name}).`);
  }
}

async function fetchJson(url, options = {}) {
  const headers = { ...options.headers };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url, { ...options, headers });
  } catch {
    throw new Error("The voxline server is unreachable. Is `voxline serve` running?");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.message || `The server answered ${response.status}.`);
  }
  return body;
}

function iceGatheringDone(pc) {
  // One round trip with every candidate in the offer: simpler than trickling, fast on a LAN.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 2000); // enough candidates by then; don't make the user wait
  });
}

function onPeerState(state) {
  const labels = { connected: "connected", connecting: "connecting…", disconnected: "reconnecting…",
                   failed: "connection failed", closed: "not connected" };
  setConnState(state, labels[state] || state);
  if (state === "connected") setAgentState("listening");
  if (state === "failed") fail(new Error("The connection to the server failed."));
}

function onEvent(event) {
  voxline.events.push(event);
  switch (event.type) {
    case "ready": voxline.sessionId = event.session_id; break;
    case "transcript.partial": $("partial").textContent = event.text; break;
    case "transcript.final":
      $("partial").textContent = "";
      addLine("user", event.text);
      botItem = null;
      setAgentState("thinking");
      break;
    case "bot.started_speaking":
      setAgentState("speaking");
      if (!botItem) botItem = addLine("bot", ""); // shows "…" until its first sentence is heard
      break;
    case "bot.stopped_speaking": setAgentState("listening"); break;
    case "bot.text":
      if (!botItem) botItem = addLine("bot", "");
      botItem.textContent = `${botItem.textContent} ${event.text}`.trim();
      break;
    case "bot.paused": setAgentState("paused"); break;  // judging speech over it
    case "bot.resumed": setAgentState("speaking"); break;
    case "interrupted":
      if (botItem) botItem.classList.add("interrupted");
      botItem = null;
      setAgentState("listening");
      break;
    case "turn.metrics": showLatency(event.stages); break;
    case "error": showError(event.message); break;
  }
}

function addLine(who, text) {
  const item = document.createElement("li");
  item.className = who;
  item.textContent = text;
  $("transcript").append(item);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

function showLatency(stages) {
  const total = stages.total_secs || 1e-9;
  $("latency-bar").replaceChildren(...STAGES.map(([key, label, color]) => {
    const part = document.createElement("span");
    part.style.width = `${(100 * stages[key]) / total}%`;
    part.style.background = color;
    part.title = `${label} ${stages[key].toFixed(2)} s`;
    return part;
  }));
  const legend = STAGES.map(([key, label, color]) => {
    const item = document.createElement("li");
    const swatch = document.createElement("i");
    swatch.style.background = color;
    item.append(swatch, `${label} ${Number(stages[key]).toFixed(2)} s`);
    return item;
  });
  const total_item = document.createElement("li");
  const bold = document.createElement("b");
  bold.textContent = `total ${Number(total).toFixed(2)} s`;
  total_item.append(bold);
  $("latency-legend").replaceChildren(...legend, total_item);
  $("latency").hidden = false;
  $("latency-empty").hidden = true;
}

function meter(stream) {
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const draw = () => {
    analyser.getFloatTimeDomainData(samples);
    const rms = Math.sqrt(samples.reduce((sum, x) => sum + x * x, 0) / samples.length);
    voxline.micLevel = rms;
    $("mic-level").style.width = `${Math.min(100, rms * 400)}%`;
    meterFrame = requestAnimationFrame(draw);
  };
  voxline.audioContext = context;
  draw();
}

function hangUp(reason) {
  clearInterval(pingTimer);
  cancelAnimationFrame(meterFrame);
  voxline.audioContext?.close();
  voxline.mic?.getTracks().forEach((t) => t.stop());
  voxline.pc?.close();
  voxline.pc = null;
  setConnState("closed", reason === "hung up" ? "not connected" : reason);
  setAgentState("idle");
  $("talk").disabled = false;
  $("hangup").disabled = true;
}

function fail(error) {
  showError(error.message);
  hangUp("connection failed");
  setConnState("failed", "not connected");
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

function setConnState(state, label) {
  $("conn-state").dataset.state = state;
  $("conn-state").textContent = label;
}

function setAgentState(state) {
  $("agent-state").dataset.state = state;
  $("agent-state").textContent = state;
}
