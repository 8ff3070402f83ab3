"""Fake members' voices: Opus-encode, DAVE-encrypt with the member's own session, seal, send.

What a real Discord client does before the voice server forwards its audio: each
member encrypts end to end with its own DaveSession; the server then seals the RTP
with the bot's transport key and sends it from the socket the bot is connected to.
Frames are paced on absolute 20 ms deadlines, so a slow tick does not drift the stream.

Key changes (a commit, a protocol downgrade or upgrade) take effect for sending only when the
voice server executes the transition (op 22), while receiving switches as the commit is
processed: before a member's session takes a commit, what it has left to say is sealed with
the keys it has (`hold_keys`), and those frames go out until the switch (`switch_keys`),
the last few of them arriving after it, as frames in flight do.
"""

import asyncio
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from discord.opus import Encoder
from loguru import logger

from .audio import FRAME_SAMPLES, FRAME_SECS, is_voiced, to_discord_frames
from .members import FakeMember
from .rtp import AUDIO_LEVEL_EXTENSION, OPUS_SILENCE
from .voice_ws import VoiceServer

OP_SPEAKING = 5
SPEAKING_MICROPHONE = 1
TRAILING_SILENCE_FRAMES = 5
# Frames a member sent just before a key switch that reach the bot after it (100 ms): the
# voice server forwards media by UDP while it announces the switch on the websockets.
IN_FLIGHT_FRAMES = 5


@dataclass
class MemberStream:
    """One member's outgoing RTP state."""

    sequence: int = field(default_factory=lambda: random.randrange(1 << 16))
    timestamp: int = field(default_factory=lambda: random.randrange(1 << 32))
    encoder: Encoder | None = None
    last_frame: bytes | None = None  # the last DAVE (or plain) payload sent
    upcoming: deque[bytes] = field(default_factory=deque)  # Opus of this utterance, unsent
    sealed_ahead: deque[bytes] = field(default_factory=deque)  # the first of those, sealed


def without_trailing_quiet(frames: list[bytes]) -> list[bytes]:
    """What a client's voice activity gate transmits of an utterance: up to its last voiced
    frame. Then five Opus silence frames, and nothing at all until the member speaks again."""
    end = len(frames)
    while end and not is_voiced(frames[end - 1]):
        end -= 1
    return frames[:end]


class MediaSender:
    """Sends members' audio to the bot through the voice server. Owned by FakeDiscord."""

    def __init__(self, voice: VoiceServer) -> None:
        self._voice = voice
        self._streams: dict[int, MemberStream] = {}
        self.sent_frame_count = 0

    def _stream(self, member: FakeMember) -> MemberStream:
        return self._streams.setdefault(member.user_id, MemberStream())

    def _check_connected(self, member: FakeMember) -> None:
        if not self._voice.is_bot_connected:
            raise RuntimeError(f"{member} cannot speak: the bot is not connected to voice; "
                               "await fake.wait_bot_in_voice() first")

    def _e2ee(self, member: FakeMember, opus: bytes) -> bytes:
        """DAVE-encrypts with the member's session; plain Opus when DAVE is off."""
        session, mls = self._voice.session, self._voice.mls
        if session is None or not session.dave or (mls is not None and not mls.protocol_version):
            return opus
        if member.session is None or not member.session.ready:
            raise RuntimeError(f"{member} is not in the bot's MLS group (is it in the bot's "
                               "voice channel, and did wait_bot_in_voice() return?)")
        return member.session.encrypt_opus(opus)

    def _send(self, member: FakeMember, payload: bytes, *, extension: bool) -> None:
        stream = self._stream(member)
        stream.sequence = (stream.sequence + 1) & 0xFFFF
        stream.timestamp = (stream.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        session = self._voice.session
        datagram = session.cipher.seal(
            sequence=stream.sequence, timestamp=stream.timestamp, ssrc=member.ssrc,
            payload=payload, extension=AUDIO_LEVEL_EXTENSION if extension else b"")
        self._voice.send_rtp(datagram)
        self.sent_frame_count += 1

    async def announce(self, member: FakeMember, *, speaking: bool) -> None:
        await self._voice.send_json(OP_SPEAKING, {
            "user_id": str(member.user_id), "ssrc": member.ssrc,
            "speaking": SPEAKING_MICROPHONE if speaking else 0})

    def hold_keys(self, members: Iterable[FakeMember]) -> None:
        """Seals what each member has left to say with its current keys (or none), before its
        session takes a commit or the call changes protocol."""
        for member in members:
            stream = self._streams.get(member.user_id)
            if stream is None or not stream.upcoming or stream.sealed_ahead:
                continue
            try:
                stream.sealed_ahead = deque(self._e2ee(member, opus) for opus in stream.upcoming)
            except RuntimeError:  # not in a group yet: nothing it could send anyway
                continue

    def switch_keys(self, members: Iterable[FakeMember]) -> None:
        """The transition executed: after the frames already in flight, members send with
        their new keys."""
        for member in members:
            stream = self._streams.get(member.user_id)
            if stream is not None:
                while len(stream.sealed_ahead) > IN_FLIGHT_FRAMES:
                    stream.sealed_ahead.pop()

    async def speak(self, member: FakeMember, pcm: bytes | np.ndarray, *, sample_rate: int,
                    header_extension: bool, announce: bool) -> int:
        self._check_connected(member)
        frames = without_trailing_quiet(to_discord_frames(pcm, sample_rate))
        stream = self._stream(member)
        if stream.upcoming:
            raise RuntimeError(f"{member} is already speaking")
        encoder = stream.encoder = stream.encoder or Encoder(application="voip")
        stream.upcoming = deque(await asyncio.to_thread(
            lambda: [encoder.encode(frame, FRAME_SAMPLES) for frame in frames]))
        if announce:
            await self.announce(member, speaking=True)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while stream.upcoming:
                opus = stream.upcoming.popleft()
                member.sent_opus.append(opus)
                sealed = stream.sealed_ahead.popleft() if stream.sealed_ahead else None
                payload = sealed or self._e2ee(member, opus)
                self._send(member, payload, extension=header_extension)
                stream.last_frame = payload
                next_at += FRAME_SECS
                await asyncio.sleep(max(0.0, next_at - loop.time()))
        finally:  # cancelled mid-utterance: the member may speak again
            stream.upcoming.clear()
            stream.sealed_ahead.clear()
        for _ in range(TRAILING_SILENCE_FRAMES):
            self._send(member, OPUS_SILENCE, extension=header_extension)
            next_at += FRAME_SECS
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        if announce:
            await self.announce(member, speaking=False)
        logger.debug("{} spoke {} frames to the bot", member, len(frames))
        return len(frames)

    async def send_replayed(self, member: FakeMember) -> None:
        self._check_connected(member)
        stream = self._stream(member)
        if stream.last_frame is None:
            raise RuntimeError(f"{member} has sent nothing to replay; speak() first")
        self._send(member, stream.last_frame, extension=False)

    async def send_corrupted(self, member: FakeMember) -> None:
        """A tone frame DAVE-encrypted, then its first ciphertext byte flipped."""
        self._check_connected(member)
        stream = self._stream(member)
        if stream.encoder is None:
            stream.encoder = Encoder(application="voip")
        tone = (np.sin(np.arange(FRAME_SAMPLES) / 8) * 8000).astype(np.int16)
        opus = stream.encoder.encode(np.repeat(tone, 2).tobytes(), FRAME_SAMPLES)
        payload = bytearray(self._e2ee(member, opus))
        payload[0] ^= 0xFF
        self._send(member, bytes(payload), extension=False)
