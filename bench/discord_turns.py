"""`voxline bench --discord-turns`: when a Discord member's turn ends, against a microphone's.

A microphone (a WebSocket or WebRTC client) keeps sending audio, silence included, after its
user stops talking. A Discord client sends five Opus silence frames and then nothing, until
its member talks again. Both are played here, in real time, into the Discord bot's member
transport on the same prompts, with the same models, in this process; voice-to-voice runs
from the end of the user's speech to the first audible 20 ms the bot's player reads (as
discord.py's player thread does), so the two differ only in what arrives after the speech.
"""

import asyncio
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from voxline.agent import Persona, SessionOptions, run_session
from voxline.bench.prompts import Prompt, built_in_prompts, manifest_prompts
from voxline.bots.discord.audio_source import BufferedAudioSource
from voxline.bots.discord.floor import PlaybackFloor
from voxline.bots.discord.transport import (
    DISCORD_SAMPLE_RATE,
    PACKET_SECS,
    SpeakerTransport,
    silence_fill_secs,
)
from voxline.bus.inprocess import InProcessBus
from voxline.config.settings import VoxlineSettings
from voxline.models import ModelSet, load_models

PACKET_BYTES = 640  # 20 ms of 16 kHz mono int16, what the receive path hands the transport
DISCORD_TRAILING_SILENCE_PACKETS = 5  # a client's last Opus silence frames, then nothing
MICROPHONE_SILENCE_SECS = 6.0  # more than any turn waits for
TURN_TIMEOUT_SECS = 30.0
CLIENTS = ("microphone", "discord")


@dataclass(frozen=True)
class DiscordTurnsOptions:
    turns: int = 2  # passes over the prompts
    manifest: Path | None = None


class _RealTimePlayer:
    """Reads the bot's audio source every 20 ms in a thread, as discord.py's player does, and
    notes when the first audible frame was read."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.first_audible_at: float | None = None
        self.audible = asyncio.Event()
        self._loop = loop
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def play(self, source: BufferedAudioSource) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source, self._stop), daemon=True)
        self._thread.start()

    def _run(self, source: BufferedAudioSource, stop: threading.Event) -> None:
        while not stop.is_set():
            frame = source.read()
            if not frame:
                return
            if self.first_audible_at is None and any(frame):
                self.first_audible_at = time.monotonic()
                self._loop.call_soon_threadsafe(self.audible.set)
            time.sleep(PACKET_SECS)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def is_playing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def is_connected(self) -> bool:
        return True


async def _feed(transport: SpeakerTransport, pcm: bytes, start: float) -> float:
    """Feeds `pcm` in real-time 20 ms packets from `start`; returns when the last was due."""
    loop = asyncio.get_running_loop()
    for index in range(0, len(pcm), PACKET_BYTES):
        transport.feed(pcm[index:index + PACKET_BYTES])
        await asyncio.sleep(max(0.0, start + (index // PACKET_BYTES + 1) * PACKET_SECS
                                - loop.time()))
    return start + len(pcm) / PACKET_BYTES * PACKET_SECS


async def one_turn(models: ModelSet, settings: VoxlineSettings, prompt: Prompt,
                   client: str) -> float:
    """Seconds from the end of the prompt's speech to the bot's first audible audio."""
    loop = asyncio.get_running_loop()
    player = _RealTimePlayer(loop)
    floor = PlaybackFloor(player)
    transport = SpeakerTransport(floor=floor, name=f"bench-{client}",
                                 silence_fill=silence_fill_secs(settings.vad, settings.agent))
    options = SessionOptions(session_id=f"bench-discord-{client}", transport="discord",
                             persona=Persona(settings.agent.system_prompt),
                             audio_in_sample_rate=16000,
                             audio_out_sample_rate=DISCORD_SAMPLE_RATE)
    session = asyncio.create_task(run_session(transport, models, settings, InProcessBus(),
                                              options))
    speech = prompt.pcm[:int(prompt.speech_end_secs * 16000) * 2]
    after = (DISCORD_TRAILING_SILENCE_PACKETS * PACKET_SECS if client == "discord"
             else MICROPHONE_SILENCE_SECS)
    silence: asyncio.Task | None = None
    try:
        speech_ended = await _feed(transport, speech, loop.time())
        speech_ended_at = time.monotonic()
        silence = asyncio.create_task(
            _feed(transport, bytes(int(after / PACKET_SECS) * PACKET_BYTES), speech_ended))
        try:
            await asyncio.wait_for(player.audible.wait(), TURN_TIMEOUT_SECS)
        except TimeoutError:
            raise RuntimeError(f"no answer to prompt {prompt.id!r} ({client}) within "
                               f"{TURN_TIMEOUT_SECS:g} s") from None
        return player.first_audible_at - speech_ended_at
    finally:
        if silence is not None:
            silence.cancel()
        await transport.disconnect("bench turn done")
        await asyncio.gather(session, *([silence] if silence else []), return_exceptions=True)
        await floor.close()


def summarise(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"n": len(values), "p50_secs": round(statistics.median(ordered), 3),
            "p95_secs": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
            "values_secs": [round(v, 3) for v in values]}


async def run_discord_turns(settings: VoxlineSettings, options: DiscordTurnsOptions) -> dict:
    """Every measurement, as plain data (what --json writes)."""
    models = await asyncio.to_thread(load_models, settings)
    try:
        with tempfile.TemporaryDirectory(prefix="voxline-bench-") as folder:
            prompts = (manifest_prompts(options.manifest) if options.manifest
                       else built_in_prompts(Path(folder)))
            await one_turn(models, settings, prompts[0], "microphone")  # warm-up, not counted
            results: dict[str, list[float]] = {client: [] for client in CLIENTS}
            for _ in range(options.turns):
                for prompt in prompts:
                    for client in CLIENTS:
                        results[client].append(await one_turn(models, settings, prompt, client))
    finally:
        models.close()
    report = {"started": time.time(), "prompts": len(prompts),
              "discord_turns": {client: summarise(v) for client, v in results.items()}}
    summaries = report["discord_turns"]
    summaries["discord_minus_microphone_p50_secs"] = round(
        summaries["discord"]["p50_secs"] - summaries["microphone"]["p50_secs"], 3)
    return report


def discord_turns_table(report: dict) -> str:
    turns = report["discord_turns"]
    lines = ["client                      voice-to-voice p50 / p95   n"]
    for client, label in (("microphone", "microphone (silence sent)"),
                          ("discord", "Discord (nothing sent)")):
        s = turns[client]
        lines.append(f"{label:<28}{s['p50_secs']:>8.2f} / {s['p95_secs']:.2f} s   {s['n']:>3}")
    difference = turns["discord_minus_microphone_p50_secs"]
    lines.append(f"Discord minus microphone, p50: {difference:+.2f} s")
    return "\n".join(lines)
