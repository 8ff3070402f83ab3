"""DAVE-aware voice receive: UDP datagrams in, each speaker's 16 kHz mono PCM out.

discord.py only sends. Its socket reader thread hands us every datagram; per packet we strip the
RTP header, undo the transport encryption, undo DAVE's end-to-end encryption with the sender's
key (or pass through when the call has no DAVE), decode Opus and downsample. A packet that fails
any step is dropped and counted, never passed on as silence.
"""

import asyncio
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import davey
import numpy as np
import soxr
from discord.opus import Decoder, OpusError
from loguru import logger

from voxline.bots.discord.rtp import TransportDecryptError, decrypt_payload, parse_rtp

PIPELINE_SAMPLE_RATE = 16000  # what VAD and Whisper take
# This many DAVE frames of one member in a row that do not decrypt (0.7 s of speech): the bot's
# group state is out of step (a commit it missed); it asks to be added again, as discord.js does.
DAVE_FAILURES_BEFORE_RECOVERY = 36
MAX_CONCEALED_PACKETS = 3  # a gap this short is filled (Opus in-band FEC, loss concealment)
_HALF_SEQUENCE_SPACE = 0x8000
# This many packets in a row, each following the one before, all "older" than what was played:
# the sender's sequence numbers jumped (a client restart, a remapped SSRC), they are not late.
RESYNC_AFTER_PACKETS = 3


@dataclass
class ReceiveStats:
    """Counters for one voice connection; read by `/status` and the tests."""

    packets: int = 0
    decoded: int = 0
    concealed: int = 0
    recovered: int = 0  # lost packets rebuilt from the next one's in-band FEC
    held: int = 0  # waited for their SSRC's speaking event
    dropped_transport: int = 0  # failed transport authentication
    dropped_dave: int = 0  # replayed, corrupted or undecryptable end-to-end frames
    dropped_late: int = 0  # duplicates and packets older than one already played
    dropped_opus: int = 0
    dropped_unmapped: int = 0  # their SSRC never got a speaking event in time
    decoded_by_member: Counter = field(default_factory=Counter)  # user id → packets decoded

    @property
    def dropped(self) -> int:
        return (self.dropped_transport + self.dropped_dave + self.dropped_late
                + self.dropped_opus + self.dropped_unmapped)


# DAVE frames end with this marker; anything else is plain Opus (or Opus silence, never encrypted).
DAVE_MAGIC_MARKER = b"\xfa\xfa"


@dataclass(frozen=True)
class ReceiveKeys:
    """What decrypting needs right now; all change on reconnects and DAVE transitions."""

    secret_key: bytes
    dave_session: davey.DaveSession | None  # None: the call never had DAVE
    dave_protocol_version: int = 0  # 0: transport encryption only (never had DAVE, or left it)

    def end_to_end(self, user_id: int) -> davey.DaveSession | None:
        """The session that opens `user_id`'s frames, or None when they come as plain Opus.

        After a downgrade to version 0, frames sent just before the switch still arrive
        encrypted: the session keeps its previous keys briefly and passes plain frames through
        (discord.py turns passthrough on when the downgrade is announced), so it stays in the
        path while it allows that, as in discord.js."""
        session = self.dave_session
        if session is None or not session.ready:
            return None
        if self.dave_protocol_version == 0 and not session.can_passthrough(user_id):
            return None
        return session


class _SpeakerStream:
    """Decoder state of one SSRC: Opus decoder, downmix + resampler, last sequence number."""

    def __init__(self):
        self.decoder = Decoder()
        self.resampler = soxr.ResampleStream(Decoder.SAMPLING_RATE, PIPELINE_SAMPLE_RATE, 1,
                                             dtype="int16")
        self.last_sequence: int | None = None
        self._stale_run: list[int] = []  # consecutive sequence numbers refused as late

    def gap_before(self, sequence: int) -> int | None:
        """Packets missing before `sequence`; None if it is a duplicate or late. A run of
        `RESYNC_AFTER_PACKETS` "late" packets that follow one another is a jump: the stream
        goes on from there."""
        if self.last_sequence is None:
            return 0
        delta = (sequence - self.last_sequence) & 0xFFFF
        if delta == 0 or delta >= _HALF_SEQUENCE_SPACE:
            run = self._stale_run
            if run and (sequence - run[-1]) & 0xFFFF != 1:
                run.clear()
            run.append(sequence)
            if len(run) < RESYNC_AFTER_PACKETS:
                return None
            run.clear()
            return 0
        self._stale_run.clear()
        return delta - 1

    def decode(self, opus: bytes, gap: int) -> tuple[bytes, int]:
        """16 kHz mono PCM for this frame, after filling a short gap before it, and the number
        of lost frames filled. Discord clients send in-band FEC: the packet after a loss
        carries a coarse copy of the lost one, which rebuilds the last lost frame; any before
        it are concealed (extrapolated)."""
        filled = gap if 0 < gap <= MAX_CONCEALED_PACKETS else 0
        pcm = b"".join(self.decoder.decode(None, fec=False) for _ in range(filled - 1))
        if filled:
            pcm += self.decoder.decode(opus, fec=True)
        pcm += self.decoder.decode(opus, fec=False)
        stereo = np.frombuffer(pcm, dtype=np.int16).reshape(-1, Decoder.CHANNELS)
        mono = stereo.mean(axis=1).astype(np.int16)
        return self.resampler.resample_chunk(mono).tobytes(), filled


class VoiceReceiver:
    """Receive for one voice connection. `on_datagram` runs on discord.py's socket thread,
    `on_speaking`/`forget_user` on the event loop; `on_audio(user_id, pcm)` is called on the loop.

    Packets of an SSRC whose member is not known yet (the speaking event can come after the
    first packets) are held, up to `max_held_packets`, and played once it is.
    """

    def __init__(
        self,
        *,
        keys: Callable[[], ReceiveKeys | None],
        on_audio: Callable[[int, bytes], None],
        loop: asyncio.AbstractEventLoop,
        max_held_packets: int = 50,
        on_undecryptable: Callable[[int], None] = lambda _user_id: None,
    ):
        self._keys = keys
        self._on_audio = on_audio
        self._on_undecryptable = on_undecryptable  # called on the loop with the member's id
        self._dave_failures: Counter = Counter()  # user id → DAVE failures in a row
        self._loop = loop
        self._max_held = max_held_packets
        self._lock = threading.Lock()
        self._user_by_ssrc: dict[int, int] = {}
        self._streams: dict[int, _SpeakerStream] = {}
        self._held: dict[int, deque[tuple[int, bytes]]] = {}
        self._announced: dict[int, float] = {}  # ssrc → when op 5 said it speaks, unheard since
        self.stats = ReceiveStats()

    def unheard_speakers(self, after_secs: float) -> list[int]:
        """Members Discord said started speaking over `after_secs` ago, of whom not one packet
        has arrived since: their audio is not reaching the bot."""
        now = time.monotonic()
        with self._lock:
            return [self._user_by_ssrc[ssrc] for ssrc, at in self._announced.items()
                    if now - at >= after_secs and ssrc in self._user_by_ssrc]

    def on_speaking(self, user_id: int, ssrc: int, *, speaking: bool = True) -> None:
        """Voice op 5: `ssrc` belongs to `user_id`; play what was held for it."""
        with self._lock:
            if speaking:  # cleared by their next packet (not by speaking 0: none came)
                self._announced.setdefault(ssrc, time.monotonic())
            if self._user_by_ssrc.get(ssrc, user_id) != user_id:
                self._streams.pop(ssrc, None)  # another member's stream now: start afresh
            self._user_by_ssrc[ssrc] = user_id
            held = self._held.pop(ssrc, ())
            if held:
                keys = self._keys()
                for sequence, payload in held:
                    self._deliver(user_id, ssrc, sequence, payload, keys)

    def forget_user(self, user_id: int) -> None:
        """Voice op 13 (a member left the call): drop their decoder state."""
        with self._lock:
            for ssrc in [s for s, u in self._user_by_ssrc.items() if u == user_id]:
                del self._user_by_ssrc[ssrc]
                self._streams.pop(ssrc, None)
                self._announced.pop(ssrc, None)

    def on_datagram(self, datagram: bytes) -> None:
        """One UDP datagram from the voice server (socket thread; must not block)."""
        packet = parse_rtp(datagram)
        keys = self._keys() if packet is not None else None
        if packet is None or keys is None:
            return
        with self._lock:
            self.stats.packets += 1
            self._announced.pop(packet.ssrc, None)
            try:
                payload = decrypt_payload(packet, keys.secret_key)
            except TransportDecryptError as e:
                self.stats.dropped_transport += 1
                logger.debug("Discord receive: dropped a packet from SSRC {}: {}", packet.ssrc, e)
                return
            user_id = self._user_by_ssrc.get(packet.ssrc)
            if user_id is None:
                self._hold(packet.ssrc, packet.sequence, payload)
            else:
                self._deliver(user_id, packet.ssrc, packet.sequence, payload, keys)

    def _hold(self, ssrc: int, sequence: int, payload: bytes) -> None:
        held = self._held.setdefault(ssrc, deque())
        if len(held) >= self._max_held:
            held.popleft()
            self.stats.dropped_unmapped += 1
        held.append((sequence, payload))
        self.stats.held += 1

    def _deliver(self, user_id: int, ssrc: int, sequence: int, payload: bytes,
                 keys: ReceiveKeys | None) -> None:
        stream = self._streams.get(ssrc) or self._streams.setdefault(ssrc, _SpeakerStream())
        gap = stream.gap_before(sequence)
        if gap is None:
            self.stats.dropped_late += 1
            return
        opus = self._open_end_to_end(user_id, payload, keys)
        if opus is None:
            return
        try:
            pcm, filled = stream.decode(opus, gap)
        except OpusError as e:
            self.stats.dropped_opus += 1
            logger.debug("Discord receive: undecodable Opus from user {}: {}", user_id, e)
            return
        stream.last_sequence = sequence
        self.stats.decoded += 1
        self.stats.decoded_by_member[user_id] += 1
        self.stats.recovered += min(filled, 1)
        self.stats.concealed += max(filled - 1, 0)
        if pcm:
            self._call_on_loop(self._on_audio, user_id, pcm)

    def _open_end_to_end(self, user_id: int, payload: bytes,
                         keys: ReceiveKeys | None) -> bytes | None:
        """The Opus frame inside a DAVE frame, the frame itself if it is plain, or None (dropped
        and counted). Plain frames pass while no group is ready: members send them until a
        transition to DAVE executes, and the group forms (welcome, commit) before that."""
        session = keys.end_to_end(user_id) if keys is not None else None
        if session is None:
            if keys is not None and keys.dave_session is not None \
                    and payload.endswith(DAVE_MAGIC_MARKER):
                # A DAVE frame before the bot's group is ready (joining, re-keying): no key
                # yet, and no reason to ask to be added again.
                self.stats.dropped_dave += 1
                return None
            return payload
        try:
            opus = session.decrypt(user_id, davey.MediaType.audio, payload)
        except ValueError as e:  # davey raises ValueError for every failure, naming it
            self.stats.dropped_dave += 1
            logger.debug("Discord receive: dropped a DAVE frame of user {}: {}", user_id, e)
            self._dave_failures[user_id] += 1
            if self._dave_failures[user_id] == DAVE_FAILURES_BEFORE_RECOVERY:
                self._dave_failures[user_id] = 0
                self._call_on_loop(self._on_undecryptable, user_id)
            return None
        self._dave_failures.pop(user_id, None)
        return opus

    def _call_on_loop(self, callback: Callable, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed while the socket thread was still reading
            pass
