"""Echo cancellation and noise suppression candidates for the server, measured on generated speech.

Echo: the bot's voice (the packaged Piper voice; espeak-ng) through voxline's `Room` (gain
-6/-12/-20 dB, delay 30-250 ms, two reflections), cleaned by WebRTC's AEC3 (LiveKit's prebuilt
module), speexdsp's canceller (pip `speexdsp`) and `pyaec` (speexdsp via aec-rs). Noise:
Whisper's WER on espeak-ng voices in pink noise, babble and music, with no suppression,
WebRTC's suppressor and RNNoise (`pyrnnoise`). Results and the decision: docs/performance.md.
The optional candidates are skipped when they are not importable (see there for PYTHONPATH).

Run: .venv/bin/python scripts/measure_audio_processing.py results.json  (~6.5 min on 2 cores)
"""

import argparse
import asyncio
import ctypes
import importlib.util
import json
import re
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import jiwer
import numpy as np
import soxr
from livekit import rtc
from pipecat.audio.vad.vad_analyzer import VADParams, VADState

from voxline.config.settings import VoxlineSettings
from voxline.models import catalog
from voxline.models.piper import PiperSynthesizer
from voxline.models.registry import ModelRegistry
from voxline.models.silero import load_silero
from voxline.models.whisper import WhisperEngine
from voxline.pipeline.vad import PausingSileroVADAnalyzer
from voxline.room import Room

RATE = 16000
FRAME = 160  # 10 ms: the unit every canceller here works on
SPEECH_DBFS = -20.0  # active-speech level of the bot's playback and of the user at the mic
FLOOR_DBFS = -80.0  # the microphone's own noise
BOT_TEXT = ("Sure, here is a quick look at the weather. The morning stays cloudy with a light "
            "breeze from the west. By the afternoon the sun comes out and it gets warmer. "
            "Tomorrow looks wetter, so keep an umbrella close by.")
USER_TEXTS = ["Can you turn the music down a little?", "What time does the bakery open?",
              "Please stop and tell me about trains instead."]
USER_VOICES = ["en-us+f2", "en-gb+m3"]
NS_TEXTS = ["What is the capital of France?", "Can you recommend a good book for the weekend?",
            "Please remind me to call my sister tonight.", "How do I cook rice on the stove?",
            "Tell me something interesting about the ocean.", "What should I wear when it rains?",
            "Give me one tip to sleep better.", "How far away is the moon from here?",
            "Turn off the lights in the kitchen.", "Who wrote the story about the white whale?",
            "I would like to order a large pizza.", "Is it going to be windy tomorrow morning?"]
NS_VOICES = [("en-us+m3", 140), ("en+f2", 185), ("en-gb+m1", 160), ("en-us+f4", 175),
             ("en-us+m3", 185), ("en+f2", 140), ("en-gb+m1", 130), ("en-us+f4", 200),
             ("en-us+m3", 165), ("en+f2", 165), ("en-gb+m1", 190), ("en-us+f4", 150)]
GAINS_DB = [-6.0, -12.0, -20.0]
DELAYS_MS = [30, 60, 120, 250]
# (gain dB, delay ms); None: headphones, the bot plays but the microphone hears none of it
DT_ROOMS = [(None, 120), (-6.0, 120), (-12.0, 120), (-20.0, 120), (-6.0, 250)]
BARGE_IN_SECS = 0.4  # a barge-in that works: the bot's playback stops this long after
DT_START_SECS = 4.0  # the user starts talking over the bot here
SPEEX_TAIL_MS = 320  # speex's filter must span the whole echo path (delay + reflections)
VAD = VADParams(confidence=0.6, start_secs=0.2, stop_secs=0.3, min_volume=0.5)  # server's


# ---------- signals ----------

def espeak(text: str, voice: str, speed: int = 165, pitch: int = 50) -> np.ndarray:
    """espeak-ng's speech of `text`, float32 at 16 kHz."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w",
                        f.name, text], check=True)
        with wave.open(f.name, "rb") as w:
            rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    return soxr.resample(np.frombuffer(pcm, np.int16).astype(np.float32) / 32768, rate, RATE)


def piper_speech(settings: VoxlineSettings, text: str) -> np.ndarray:
    """The bot's real voice: the packaged Piper voice, float32 at 16 kHz."""
    onnx = ModelRegistry(settings.models.cache_dir).path_of(catalog.PIPER_JOE)
    voice = PiperSynthesizer(model_path=onnx, config_path=onnx.with_name(onnx.name + ".json"),
                             speed=1.0, num_threads=2)
    pcm = b"".join(voice.synthesize(text))
    return soxr.resample(np.frombuffer(pcm, np.int16).astype(np.float32) / 32768,
                         voice.sample_rate, RATE)


def at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """`x` scaled so its active part (20 ms windows within 30 dB of the loudest) has RMS `dbfs`."""
    win = x[: len(x) // 320 * 320].reshape(-1, 320)
    rms = np.sqrt(np.mean(win**2, axis=1)) + 1e-9
    active = rms[rms > rms.max() * 10 ** (-30 / 20)]
    return x * (10 ** (dbfs / 20) / np.sqrt(np.mean(active**2)))


def dbfs(x: np.ndarray) -> float:
    """RMS level of float audio (full scale 1.0)."""
    return float(10 * np.log10(np.mean(x**2) + 1e-12))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n).astype(np.float32)


def babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Six espeak-ng talkers at once, each saying something else (none of the test sentences):
    a café, not words."""
    voices = ["en-us+m1", "en+f3", "en-gb+m4", "en-us+f1", "en+m2", "en-gb+f4"]
    lines = [BOT_TEXT, *USER_TEXTS]
    out = np.zeros(n, np.float32)
    for i, voice in enumerate(voices):
        talk = at_level(espeak(" ".join(lines[i % 4:] + lines[: i % 4]), voice, 150 + 10 * i,
                               30 + 8 * i), SPEECH_DBFS)
        talk = np.roll(np.resize(talk, n), int(rng.integers(n)))
        out += talk
    return out


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """Harmonic tones on a beat: a bass line, a melody of 250 ms notes, a kick every 500 ms."""
    t = np.arange(n) / RATE
    note = (t * 4).astype(int)  # 250 ms notes
    scale = np.array([0, 2, 4, 7, 9, 12])
    melody = 440 * 2 ** (scale[rng.integers(len(scale), size=note.max() + 1)][note] / 12)
    bass = 110 * 2 ** (scale[(note // 4) % 4] / 12)
    envelope = np.exp(-6 * (t * 4 % 1))
    out = np.zeros(n, np.float32)
    for freq, level in ((melody, 1.0), (bass, 0.8)):
        phase = 2 * np.pi * np.cumsum(freq) / RATE
        out += level * envelope * sum(np.sin(k * phase) / k for k in range(1, 7))
    out += 1.5 * np.exp(-30 * (t * 2 % 1)) * np.sin(2 * np.pi * 55 * t)
    return out.astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`speech` (at SPEECH_DBFS) plus `noise` scaled to `snr_db` below it."""
    return speech + noise * 10 ** ((SPEECH_DBFS - snr_db - dbfs(noise)) / 20)


def to_pcm(x: np.ndarray) -> np.ndarray:
    """Float audio as int16."""
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


# ---------- processors: each cleans one 10 ms int16 frame, given what the speaker played ----------

class Apm:
    """LiveKit's WebRTC audio-processing module (AEC3 + optional NS), high-pass filter on."""

    def __init__(self, *, aec: bool, ns: bool, delay_ms: int | None = None):
        self._apm = rtc.AudioProcessingModule(echo_cancellation=aec, noise_suppression=ns,
                                              high_pass_filter=True, auto_gain_control=False)
        self._aec, self._delay_ms = aec, delay_ms

    def __call__(self, mic: np.ndarray, far: np.ndarray) -> np.ndarray:
        if self._aec:
            self._apm.process_reverse_stream(rtc.AudioFrame(far.tobytes(), RATE, 1, FRAME))
            if self._delay_ms is not None:  # WebRTC wants it before every capture frame
                self._apm.set_stream_delay_ms(self._delay_ms)
        frame = rtc.AudioFrame(mic.tobytes(), RATE, 1, FRAME)
        self._apm.process_stream(frame)
        return np.frombuffer(frame.data, np.int16).copy()


class Speex:
    """speexdsp's MDF echo canceller (pip `speexdsp`, built against libspeexdsp); with a known
    delay the reference is shifted by it, so the filter only has to learn the reflections."""

    def __init__(self, *, delay_ms: int | None = None):
        from speexdsp import EchoCanceller
        self._ec = EchoCanceller.create(FRAME, RATE * SPEEX_TAIL_MS // 1000, RATE)
        self._fifo = [np.zeros(FRAME, np.int16)] * ((delay_ms or 0) // 10)

    def __call__(self, mic: np.ndarray, far: np.ndarray) -> np.ndarray:
        self._fifo.append(far)
        return np.frombuffer(self._ec.process(mic.tobytes(), self._fifo.pop(0).tobytes()),
                             np.int16)


class PyAec:
    """`pyaec` (speexdsp's canceller and its residual-echo preprocessor, via aec-rs)."""

    def __init__(self):
        from pyaec import Aec
        self._aec = Aec(FRAME, RATE * SPEEX_TAIL_MS // 1000, RATE, True)

    def __call__(self, mic: np.ndarray, far: np.ndarray) -> np.ndarray:
        return np.array(self._aec.cancel_echo(mic.tolist(), far.tolist()), np.int16)


def rnnoise(x: np.ndarray) -> np.ndarray:
    """RNNoise (pyrnnoise's library, Xiph's model) on int16 audio: up to 48 kHz, 10 ms frames,
    back to 16 kHz. The library is called directly: the package's wrapper imports audiolab."""
    folder = importlib.util.find_spec("pyrnnoise").submodule_search_locations[0]
    lib = ctypes.CDLL(str(Path(folder) / "librnnoise.so"))
    lib.rnnoise_create.restype = ctypes.c_void_p
    lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                          ctypes.POINTER(ctypes.c_float)]
    state = lib.rnnoise_create(None)
    up = soxr.resample(x.astype(np.float32), RATE, 48000)
    up = np.ascontiguousarray(np.pad(up, (0, -len(up) % 480)), np.float32)
    out, ptr = np.empty_like(up), ctypes.POINTER(ctypes.c_float)
    for i in range(0, len(up), 480):  # not in place: that measured ~10x slower
        lib.rnnoise_process_frame(state, out[i:].ctypes.data_as(ptr), up[i:].ctypes.data_as(ptr))
    lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
    lib.rnnoise_destroy(state)
    return np.clip(soxr.resample(out, 48000, RATE)[: len(x)], -32768, 32767).astype(np.int16)


def run_frames(process, mic: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, float]:
    """`process` over whole 10 ms frames; the output and the seconds of CPU it took."""
    out = np.zeros_like(mic)
    started = time.process_time()
    for i in range(0, len(mic) - FRAME + 1, FRAME):
        out[i: i + FRAME] = process(mic[i: i + FRAME], far[i: i + FRAME])
    return out, time.process_time() - started


def echo_of(room: Room, far: np.ndarray, clipping: bool = False) -> np.ndarray:
    """What the microphone hears of `far` (float) in `room`, as float. The same samples as
    `LeakyRoom` capturing 10 ms at a time (checked: within 1 LSB), by one FFT convolution.
    `clipping`: a small loudspeaker driven into saturation, which no linear filter models."""
    played = np.tanh(3 * far) / 3 if clipping else far
    taps = room.impulse_response()
    n = len(far) + len(taps)
    return np.fft.irfft(np.fft.rfft(played, n) * np.fft.rfft(taps, n), n)[: len(far)]


# ---------- metrics ----------

class _RecordingAnalyzer(PausingSileroVADAnalyzer):
    """The server's VAD analyzer, keeping each 32 ms window's Silero confidence."""

    confidences: list[float]

    def voice_confidence(self, buffer) -> float:
        confidence = super().voice_confidence(buffer)
        self.confidences.append(float(np.ravel(confidence)[0]))
        return confidence


class Judges:
    """Whisper (the server's settings) and Silero (the server's VAD), loaded once."""

    def __init__(self, settings: VoxlineSettings):
        registry = ModelRegistry(settings.models.cache_dir)
        stt = settings.stt
        self.whisper = WhisperEngine(
            model_dir=registry.path_of(catalog.WHISPER_TINY_EN).parent, cpu_threads=2,
            beam_size=stt.beam_size, language=stt.language, min_window_secs=stt.min_window_secs)
        self.whisper.warm_up()
        self.silero = load_silero(registry.path_of(catalog.SILERO_VAD))

    def text(self, pcm: np.ndarray) -> str:
        """What Whisper hears, hallucinations on silence dropped as the server drops them."""
        return self.whisper.transcribe(pcm.tobytes()).text

    def vad(self, pcm: np.ndarray) -> dict:
        """Share of 32 ms windows at Silero confidence >= 0.6, and the turns the server's VAD
        (confidence, volume, 0.2 s to start) would have started, per minute."""
        analyzer = _RecordingAnalyzer(session=self.silero, sample_rate=RATE, params=VAD)
        analyzer.set_sample_rate(RATE)
        analyzer.confidences = []
        starts = asyncio.run(_start_times(analyzer, pcm))
        return {"vad_pct": 100 * float(np.mean(np.array(analyzer.confidences) >= VAD.confidence)),
                "starts_per_min": len(starts) * 60 * RATE / len(pcm), "starts_secs": starts}


async def _start_times(analyzer: PausingSileroVADAnalyzer, pcm: np.ndarray) -> list[float]:
    starts, was_speaking = [], False
    for i in range(0, len(pcm) - 319, 320):  # 20 ms frames, as transports deliver them
        state = await analyzer.analyze_audio(pcm[i: i + 320].tobytes())
        speaking = state in (VADState.SPEAKING, VADState.STOPPING)
        if speaking and not was_speaking:
            starts.append((i + 320) / RATE)
        was_speaking = speaking
    return starts


def words(text: str) -> str:
    """Lower case, no punctuation (for WER)."""
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def wer(rows: list[dict]) -> float:
    """Corpus WER in percent of rows with `ref` and `hyp`."""
    return 100 * jiwer.wer([words(r["ref"]) for r in rows],
                           [words(r["hyp"]) or "<none>" for r in rows])


def erle(mic: np.ndarray, out: np.ndarray, start_secs: float, end_secs: float | None) -> float:
    """Echo return loss enhancement (dB) between two times of an echo-only clip."""
    a, b = int(start_secs * RATE), int(end_secs * RATE) if end_secs else len(mic)
    m, o = mic[a:b].astype(np.float64), out[a:b].astype(np.float64)
    return float(10 * np.log10((np.mean(m**2) + 1e-3) / (np.mean(o**2) + 1e-3)))


# ---------- experiments ----------

def echo_cancellers(delay_ms: int) -> dict:
    """Every available canceller, once with the delay unknown and, where it can use it, once
    told the room's delay."""
    made = {"webrtc-aec3": lambda: Apm(aec=True, ns=False),
            "webrtc-aec3 delay set": lambda: Apm(aec=True, ns=False, delay_ms=delay_ms)}
    if importlib.util.find_spec("speexdsp"):
        made["speexdsp"] = Speex
        made["speexdsp delay set"] = lambda: Speex(delay_ms=delay_ms)
    if importlib.util.find_spec("pyaec"):
        made["pyaec"] = PyAec
    return made


def echo_rooms(bots: dict) -> list[tuple[str, float, int, bool]]:
    """(bot, gain dB, delay ms, clipping speaker): every room for the bot's real voice, the
    middle room for espeak-ng's, and the hardest loud rooms again with a clipping speaker."""
    first = next(iter(bots))
    rooms = [(first, g, d, False) for g in GAINS_DB for d in DELAYS_MS]
    rooms += [(bot, -12.0, 120, False) for bot in bots if bot != first]
    return rooms + [(first, -6.0, d, True) for d in (60, 250)]


def echo_only(judges: Judges, bots: dict, cpu: dict) -> list[dict]:
    """The bot talks, the user is silent: how much echo is left, and whether it still looks
    like a user to the VAD and to Whisper."""
    rows = []
    for bot_name, gain, delay, clipping in echo_rooms(bots):
        far = np.concatenate([bots[bot_name], np.zeros(RATE, np.float32)])
        floor = np.random.default_rng(1).standard_normal(len(far)) * 10 ** (FLOOR_DBFS / 20)
        mic = to_pcm(floor + echo_of(Room(delay_secs=delay / 1000, gain_db=gain), far, clipping))
        played = to_pcm(far)
        base = {"bot": bot_name, "gain_db": gain, "delay_ms": delay, "clipping": clipping}
        rows.append({**base, "canceller": "none", "residual_dbfs": dbfs(mic[2 * RATE:] / 32768),
                     **judges.vad(mic), "heard": judges.text(mic)})
        for name, make in echo_cancellers(delay).items():
            out, secs = run_frames(make(), mic, played)
            cpu.setdefault(name.replace(" delay set", ""), []).append(secs / len(mic) * RATE)
            rows.append({**base, "canceller": name, "erle_0.5_1s": erle(mic, out, 0.5, 1.0),
                         "erle_1_2s": erle(mic, out, 1.0, 2.0),
                         "erle_after_2s": erle(mic, out, 2.0, None),
                         "residual_dbfs": dbfs(out[2 * RATE:] / 32768), **judges.vad(out),
                         "heard": judges.text(out)})
    return rows


def double_talk(judges: Judges, bot: np.ndarray) -> list[dict]:
    """The user talks over the bot from DT_START_SECS on, the bot talking on or stopping after
    BARGE_IN_SECS: the user's WER in the cleaned audio (cut from 0.3 s before the first word, as
    the VAD's pre-roll would), and when the server's VAD first starts (from 2 s on)."""
    rows = []
    start = int(DT_START_SECS * RATE)
    for text in USER_TEXTS:
        for voice in USER_VOICES:
            user = at_level(espeak(text, voice), SPEECH_DBFS)
            near = np.zeros(start + len(user) + RATE // 2)
            near[start: start + len(user)] = user
            near += np.random.default_rng(2).standard_normal(len(near)) * 10 ** (FLOOR_DBFS / 20)
            base = {"ref": text, "voice": voice}
            rows.append({**base, "condition": "no echo", "room": "-", "bot": "-",
                         **_heard(judges, to_pcm(near), vad=False)})
            for gain, delay in DT_ROOMS:
                room = "headphones" if gain is None else f"{gain:.0f} dB/{delay} ms"
                rows += [{**base, "room": room, **row} for row in _one_room(judges, near, bot,
                                                                            gain, delay)]
    return rows


def _one_room(judges: Judges, near: np.ndarray, bot: np.ndarray, gain: float | None,
              delay: int) -> list[dict]:
    rows = []
    for bot_does in ("talks on", "stops"):
        far = np.resize(bot, len(near))
        if bot_does == "stops":
            far[int((DT_START_SECS + BARGE_IN_SECS) * RATE):] = 0
        echo = echo_of(Room(delay_secs=delay / 1000, gain_db=gain), far) if gain else 0
        mic = to_pcm(near + echo)
        outs = {"echo, no AEC": mic} | {name: run_frames(make(), mic, to_pcm(far))[0]
                                        for name, make in echo_cancellers(delay).items()
                                        if bot_does == "talks on" or "set" not in name}
        rows += [{"condition": name, "bot": bot_does,
                  **_heard(judges, out, vad=bot_does == "talks on")}
                 for name, out in outs.items()]
    return rows


def _heard(judges: Judges, out: np.ndarray, vad: bool) -> dict:
    """Whisper on the user's part; the VAD's false starts before it and its first start after."""
    heard = {"hyp": judges.text(out[int((DT_START_SECS - 0.3) * RATE):])}
    if vad:
        starts = [t + 2.0 for t in judges.vad(out[2 * RATE:])["starts_secs"]]
        after = [t - DT_START_SECS for t in starts if t > DT_START_SECS - 0.1]
        heard |= {"false_starts": sum(t <= DT_START_SECS - 0.1 for t in starts),
                  "onset_secs": after[0] if after else None}
    return heard


def suppressors() -> dict:
    """Each noise-suppression option: int16 audio -> (int16 audio, CPU seconds)."""
    made = {"none": lambda x: (x, 0.0),
            "webrtc-ns": lambda x: run_frames(Apm(aec=False, ns=True), x, x)}
    if importlib.util.find_spec("pyrnnoise"):
        def timed_rnnoise(x):
            started = time.process_time()
            return rnnoise(x), time.process_time() - started
        made["rnnoise"] = timed_rnnoise
    return made


def noise_suppression(judges: Judges, cpu: dict) -> tuple[list[dict], list[dict]]:
    """Whisper's WER in noise per suppressor, and the VAD on noise alone (false starts)."""
    rng = np.random.default_rng(7)
    lead = RATE  # 1 s of noise before the words: a suppressor adapts, as it would live
    clips = [(t, at_level(espeak(t, v, s), SPEECH_DBFS))
             for t, (v, s) in zip(NS_TEXTS, NS_VOICES, strict=True)]
    noises = {"pink": pink_noise(30 * RATE, rng), "babble": babble(30 * RATE, rng),
              "music": music(30 * RATE, rng)}
    rows = []
    for kind, snr in [(None, None)] + [(k, snr) for k in noises for snr in (10, 5)]:
        for text, speech in clips:
            padded = np.concatenate([np.zeros(lead), speech, np.zeros(RATE // 2)])
            if kind:
                at = int(rng.integers(len(noises[kind]) - len(padded)))
                padded = mix_at_snr(padded, noises[kind][at: at + len(padded)], snr)
            for name, suppress in suppressors().items():
                out, secs = suppress(to_pcm(padded))
                cpu.setdefault(name, []).append(secs / len(out) * RATE)
                rows.append({"noise": f"{kind} {snr} dB" if kind else "clean",
                             "suppressor": name, "ref": text,
                             "hyp": judges.text(out[lead - int(0.3 * RATE):])})
    vad_rows = []
    for kind, noise in noises.items():
        for snr in (10, 5):
            alone = to_pcm(noise[: 20 * RATE] * 10 ** ((SPEECH_DBFS - snr - dbfs(noise)) / 20))
            vad_rows += [{"noise": f"{kind} {snr} dB", "suppressor": name,
                          **judges.vad(suppress(alone)[0])}
                         for name, suppress in suppressors().items()]
    return rows, vad_rows


# ---------- report ----------

def echo_table(rows: list[dict]) -> list[dict]:
    """One line per echo-only row: the room, the canceller, its figures rounded."""
    return [{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()
             if k not in ("heard", "starts_secs")}
            | {"words_heard": len(words(r["heard"]).split())} for r in rows]


def print_echo(table: list[dict]) -> None:
    """ERLE, residual level, VAD and Whisper on the residual, one line per room and canceller."""
    print("\nEcho only: ERLE dB over 0.5-1 s / 1-2 s / after 2 s, residual dBFS after 2 s, "
          "Silero windows >= 0.6 (%), VAD starts/min, words Whisper heard")
    print(f"{'bot':<7}{'gain':>5}{'delay':>6}{'clip':>5} {'canceller':<22}{'.5-1s':>6}{'1-2s':>6}"
          f"{'>2s':>6}{'resid':>7}{'vad%':>6}{'st/min':>7}{'words':>6}")
    for r in table:
        erles = "".join(f"{r[k]:>6.1f}" for k in ("erle_0.5_1s", "erle_1_2s", "erle_after_2s")
                        ) if "erle_1_2s" in r else " " * 18
        clip = "yes" if r["clipping"] else ""
        print(f"{r['bot']:<7}{r['gain_db']:>5.0f}{r['delay_ms']:>6}{clip:>5} {r['canceller']:<22}"
              f"{erles}{r['residual_dbfs']:>7.1f}"
              f"{r['vad_pct']:>6.1f}{r['starts_per_min']:>7.1f}{r['words_heard']:>6}")


def grid(rows: list[dict], row: str, col: str, value) -> dict:
    """{row value: {column value: value(rows in that cell)}}, in first-seen order."""
    cells: dict = {}
    for r in rows:
        cells.setdefault(r[row], {}).setdefault(r[col], []).append(r)
    return {k: {c: round(value(rs), 1) for c, rs in cs.items()} for k, cs in cells.items()}


def print_grid(title: str, table: dict) -> None:
    """A table of numbers, rows by columns."""
    cols = list(dict.fromkeys(c for row in table.values() for c in row))
    print(f"\n{title}\n{'':<24}" + "".join(f"{c:>14}" for c in cols))
    for name, values in table.items():
        print(f"{name:<24}" + "".join(f"{values.get(c, float('nan')):>14.1f}" for c in cols))


def double_talk_tables(rows: list[dict]) -> dict:
    """WER with the bot talking on and stopping; the VAD's barge-in onset and false starts."""
    tables = {}
    for bot_does in ("talks on", "stops"):
        mine = [r for r in rows if r["bot"] in (bot_does, "-")]
        tables[f"wer bot {bot_does}"] = {
            k: v | {"all": round(wer([r for r in mine if r["condition"] == k]), 1)}
            for k, v in grid(mine, "condition", "room", wer).items()}
        print_grid(f"Double talk, bot {bot_does}: WER % of the user's sentence (6 per cell)",
                   tables[f"wer bot {bot_does}"])
    talking = [r for r in rows if r["bot"] == "talks on"]
    tables["vad onset ms"] = grid(talking, "condition", "room", lambda rs: 1000 * float(
        np.median([r["onset_secs"] if r["onset_secs"] is not None else np.inf for r in rs])))
    print_grid("Double talk: VAD start after the user's first word, ms (median; inf: none)",
               tables["vad onset ms"])
    tables["false starts"] = grid(talking, "condition", "room",
                                  lambda rs: sum(r["false_starts"] for r in rs))
    print_grid("Double talk: VAD starts on the echo before the user speaks (2-4 s, 6 clips)",
               tables["false starts"])
    return tables


def main() -> None:
    """Run everything, print the tables, write rows and tables as JSON to the path given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_out", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    settings = VoxlineSettings()
    judges = Judges(settings)
    bots = {"piper": at_level(piper_speech(settings, BOT_TEXT), SPEECH_DBFS),
            "espeak": at_level(espeak(BOT_TEXT, "en-us"), SPEECH_DBFS)}
    cpu: dict = {}
    echo = echo_table(echo_only(judges, bots, cpu))
    print_echo(echo)
    dt_rows = double_talk(judges, bots["piper"])
    dt = double_talk_tables(dt_rows)
    ns_rows, vad_rows = noise_suppression(judges, cpu)
    ns = grid(ns_rows, "noise", "suppressor", wer)
    print_grid("Noise: Whisper WER % per suppressor (12 sentences per cell)", ns)
    ns_vad = grid(vad_rows, "noise", "suppressor", lambda rs: rs[0]["starts_per_min"])
    print_grid("Noise alone, 20 s: VAD starts per minute", ns_vad)
    cpu_ms = {k: round(1000 * statistics.median(v), 1) for k, v in cpu.items() if k != "none"}
    print("\nCPU, ms per second of audio (median):\n" + "\n".join(
        f"  {k:<22}{v:7.1f}" for k, v in cpu_ms.items()))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    args.json_out.write_text(json.dumps(
        {"echo": echo, "double_talk_wer": dt, "double_talk_rows": dt_rows, "ns_wer": ns,
         "ns_rows": ns_rows, "ns_vad": vad_rows, "cpu_ms_per_audio_sec": cpu_ms}, indent=1))


if __name__ == "__main__":
    main()
