"""`voxline bench --speech-endpoints`: the OpenAI-compatible audio endpoints and the Wyoming
server, used as their clients use them, against servers this bench starts:

- speech: time to the first bytes of `/v1/audio/speech` (streamed) for reply-like sentences,
  per response format, and to the whole body;
- transcriptions: the bench prompts uploaded as wav files, time to the answer and WER;
- Wyoming: the prompts streamed in real time as Home Assistant does, from the last audio
  (audio-stop) to the transcript.
"""

import asyncio
import io
import statistics
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

from openai import AsyncOpenAI
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient

from voxline.bench.prompts import SAMPLE_RATE, Prompt, built_in_prompts
from voxline.bench.server_process import ServerProcess, free_port, voxline_server

SENTENCES = (
    "Paris is the capital of France.",
    "Sure, here is a quick recipe for pancakes with just four ingredients.",
    "It is about three hundred and eighty four thousand kilometres away.",
    "Turn left at the next corner, then keep going for two blocks.",
)
FORMATS = ("pcm", "mp3", "wav")
CHUNK_BYTES = 3200  # 100 ms of 16 kHz audio, as Home Assistant streams it


@dataclass(frozen=True)
class SpeechEndpointsOptions:
    short: bool = False
    llm_model: str = "qwen2.5-0.5b"
    server_logs: Path | None = None


async def run_speech_endpoints(options: SpeechEndpointsOptions) -> dict:
    """Start `voxline serve` and `voxline wyoming`, measure, stop them; the report."""
    with tempfile.TemporaryDirectory(prefix="voxline-speech-bench-") as folder:
        prompts = built_in_prompts(Path(folder))
    sentences = SENTENCES[:2] if options.short else SENTENCES
    prompts = prompts[:2] if options.short else prompts
    env = {"VOXLINE_LLM__MODEL": options.llm_model}
    logs = options.server_logs
    server = voxline_server(free_port(), env, log_path=logs / "voxline.log" if logs else None)
    wyoming_port = free_port()
    wyoming = ServerProcess("wyoming", [sys.executable, "-m", "voxline", "--log-level",
                                        "WARNING", "wyoming", "--port", str(wyoming_port)],
                            wyoming_port, env,
                            log_path=logs / "wyoming.log" if logs else None)
    report: dict = {"sentences": list(sentences), "prompts": [p.id for p in prompts]}
    try:
        await server.start()
        async with AsyncOpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="bench",
                               max_retries=0) as client:
            report["speech"] = {fmt: await _speech(client, sentences, fmt) for fmt in FORMATS}
            report["transcriptions"] = await _transcriptions(client, prompts)
        await server.stop()
        await wyoming.start(ready_path=None)
        report["wyoming"] = await _wyoming(wyoming_port, prompts)
    finally:
        await server.stop()
        await wyoming.stop()
    return report


async def _speech(client: AsyncOpenAI, sentences, response_format: str) -> dict:
    first, whole = [], []
    for text in sentences:
        started = time.monotonic()
        async with client.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=text,
                response_format=response_format) as reply:
            first_at = None
            async for piece in reply.iter_bytes():
                if piece and first_at is None:
                    first_at = time.monotonic() - started
        first.append(first_at)
        whole.append(time.monotonic() - started)
    return {"first_bytes_secs": first, "whole_secs": whole}


async def _transcriptions(client: AsyncOpenAI, prompts: list[Prompt]) -> dict:
    from jiwer import wer

    secs, errors = [], []
    for prompt in prompts:
        started = time.monotonic()
        result = await client.audio.transcriptions.create(
            model="whisper-1", file=(f"{prompt.id}.wav", _wav(prompt.pcm)))
        secs.append(time.monotonic() - started)
        errors.append(wer(_normal(prompt.text), _normal(result.text)))
    return {"secs": secs, "wer": errors}


async def _wyoming(port: int, prompts: list[Prompt]) -> dict:
    from jiwer import wer

    secs, errors = [], []
    for prompt in prompts:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=SAMPLE_RATE, width=2, channels=1).event())
            for offset in range(0, len(prompt.pcm), CHUNK_BYTES):
                await client.write_event(AudioChunk(
                    rate=SAMPLE_RATE, width=2, channels=1,
                    audio=prompt.pcm[offset:offset + CHUNK_BYTES]).event())
                await asyncio.sleep(CHUNK_BYTES / 2 / SAMPLE_RATE)
            await client.write_event(AudioStop().event())
            stopped = time.monotonic()
            while not Transcript.is_type((event := await client.read_event()).type):
                pass
            secs.append(time.monotonic() - stopped)
            errors.append(wer(_normal(prompt.text), _normal(Transcript.from_event(event).text)))
    return {"secs": secs, "wer": errors}


def _wav(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm)
    return out.getvalue()


def _normal(text: str) -> str:
    return " ".join("".join(c if c.isalnum() or c == "'" else " " for c in text.lower()).split())


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def speech_endpoints_table(report: dict) -> str:
    """The report as the lines the bench prints."""
    lines = ["speech (POST /v1/audio/speech, streamed)      first bytes p50 / max   whole p50"]
    for fmt, r in report["speech"].items():
        lines.append(f"  {fmt:<6} n={len(r['first_bytes_secs']):<3}"
                     f"{'':30}{_p(r['first_bytes_secs'], .5):5.2f} / "
                     f"{max(r['first_bytes_secs']):4.2f} s   {_p(r['whole_secs'], .5):5.2f} s")
    for name, title in (("transcriptions", "transcriptions (POST /v1/audio/transcriptions)"),
                        ("wyoming", "wyoming (audio-stop -> transcript)")):
        r = report[name]
        lines.append(f"{title:<46} p50 {_p(r['secs'], .5):5.2f} s  max {max(r['secs']):5.2f} s"
                     f"  WER {statistics.mean(r['wer']):.1%} (n={len(r['secs'])})")
    return "\n".join(lines)
