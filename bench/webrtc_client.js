// The browser half of `voxline bench --webrtc` (bench/webrtc_client.py drives it).
// One RTCPeerConnection to voxline, signalled like the talk page (POST /api/offer, events and
// keepalive pings on an "events" data channel). Its microphone track is WebAudio playing the
// bench's prompts, not getUserMedia, so the prompts reach the server exactly as sent. A meter
// (AudioWorklet) measures the bot's audio in 20 ms windows. Sending, hearing and events are all
// stamped on the one AudioContext clock, so voice-to-voice needs no clock matching.

(() => {
  const PROMPT_SAMPLE_RATE = 16000;
  const WINDOW_SECS = 0.02;
  const START_DELAY_SECS = 0.05; // schedule a prompt just ahead of the render clock
  const METER = `
    class BenchMeter extends AudioWorkletProcessor {
      constructor() { super(); this.size = Math.round(sampleRate * ${WINDOW_SECS}); this.sum = 0; this.n = 0; }
      process(inputs) {
        const samples = inputs[0] && inputs[0][0];
        const length = samples ? samples.length : 128;
        for (let i = 0; i < length; i++) {
          const x = samples ? samples[i] : 0;
          this.sum += x * x;
          if (++this.n === this.size) {  // [end of window (context secs), RMS]
            this.port.postMessage([currentTime + (i + 1) / sampleRate, Math.sqrt(this.sum / this.n)]);
            this.sum = 0;
            this.n = 0;
          }
        }
        return true;
      }
    }
    registerProcessor("bench-meter", BenchMeter);`;

  const bench = (window.voxlineBench = { events: [], audio: [], pc: null });

  bench.connect = async (timeoutSecs) => {
    const context = new AudioContext();
    await context.resume();
    const module = URL.createObjectURL(new Blob([METER], { type: "text/javascript" }));
    await context.audioWorklet.addModule(module);
    const meter = new AudioWorkletNode(context, "bench-meter", { numberOfOutputs: 0 });
    meter.port.onmessage = (e) => bench.audio.push(e.data);
    const mic = context.createMediaStreamDestination();
    // A microphone never stops: keep the track sending silence between prompts. Otherwise
    // Chrome sends nothing once a prompt has played, and the server's VAD hears the end of
    // the speech only when its input times out (~1 s more on every turn).
    const silence = context.createConstantSource();
    silence.offset.value = 0;
    silence.connect(mic);
    silence.start();
    const pc = new RTCPeerConnection({ iceServers: [] });
    Object.assign(bench, { context, mic, pc });
    pc.addTransceiver(mic.stream.getAudioTracks()[0], { direction: "sendrecv" });
    pc.ontrack = (e) => {
      const stream = e.streams[0] || new MediaStream([e.track]);
      // Chrome feeds a remote track to WebAudio only while a media element plays it.
      bench.player = new Audio();
      bench.player.muted = true;
      bench.player.srcObject = stream;
      bench.player.play().catch(() => {});
      context.createMediaStreamSource(stream).connect(meter);
    };
    const channel = pc.createDataChannel("events", { ordered: true });
    channel.onmessage = (e) => bench.events.push([context.currentTime, JSON.parse(e.data)]);
    channel.onopen = () => {
      channel.send("ping"); // the server hangs up on a peer that pinged, then fell silent
      bench.pingTimer = setInterval(() => channel.send("ping"), 1000);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringDone(pc);
    const response = await fetch("/api/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(`POST /api/offer answered ${response.status}: ` +
                      `${answer.message || "is webrtc.enabled off?"}`);
    }
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    await until(() => bench.events.some(([, e]) => e.type === "ready"), timeoutSecs,
                "no 'ready' event on the data channel");
  };

  // Play one prompt (base64 16 kHz s16le) into the mic track; returns when its speech ends
  // (context secs). Audio windows measured before this are dropped: a turn starts here.
  bench.say = (pcmBase64, speechEndSecs) => {
    const { context } = bench;
    const bytes = Uint8Array.from(atob(pcmBase64), (c) => c.charCodeAt(0));
    const pcm = new Int16Array(bytes.buffer);
    const buffer = context.createBuffer(1, pcm.length, PROMPT_SAMPLE_RATE);
    buffer.getChannelData(0).set(Float32Array.from(pcm, (x) => x / 32768));
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(bench.mic);
    const startAt = context.currentTime + START_DELAY_SECS;
    source.start(startAt);
    bench.audio = [];
    return startAt + speechEndSecs;
  };

  // Everything measured since the last call: events and audio windows, each with its time.
  bench.take = () => {
    const taken = { events: bench.events, audio: bench.audio };
    bench.events = [];
    bench.audio = [];
    return taken;
  };

  // Jitter-buffer concealment events of the bot's audio so far (the player ran dry).
  bench.concealmentEvents = async () => {
    let count = 0;
    (await bench.pc.getStats()).forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "audio") count += r.concealmentEvents || 0;
    });
    return count;
  };

  bench.close = () => {
    clearInterval(bench.pingTimer);
    bench.pc?.close();
    bench.context?.close();
  };

  function iceGatheringDone(pc) {
    // Every candidate in the offer (no trickling), as the talk page does; 2 s at most.
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") resolve();
      });
      setTimeout(resolve, 2000);
    });
  }

  async function until(condition, timeoutSecs, what) {
    const deadline = performance.now() + timeoutSecs * 1000;
    while (!condition()) {
      if (bench.pc.connectionState === "failed") throw new Error("the peer connection failed");
      if (performance.now() > deadline) throw new Error(`${what} after ${timeoutSecs} s`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
})();
