"""The receive path on its own: sealed RTP datagrams of one member in, 16 kHz PCM out, with
packets lost the way a real network loses them."""

import asyncio
import os
from collections import defaultdict

import numpy as np
from discord.opus import Encoder

from tests.bots.discord.fake.audio import FRAME_SAMPLES, to_discord_frames
from tests.bots.discord.fake.rtp import RtpSizeCipher
from tests.helpers import read_pcm
from voxline.bots.discord.receive import ReceiveKeys, VoiceReceiver

USER, SSRC = 42, 1234


class Member:
    """One member's sender: Opus (in-band FEC on, as in Discord's clients), sealed RTP."""

    def __init__(self, key: bytes, ssrc: int = SSRC, first_sequence: int = 0):
        self.cipher = RtpSizeCipher(key)
        self.encoder = Encoder(application="voip")
        self.ssrc = ssrc
        self.sequence = first_sequence

    def packets(self, speech_pcm: bytes, **seal) -> list[bytes]:
        out = []
        for frame in to_discord_frames(speech_pcm, 16000):
            out.append(self.cipher.seal(sequence=self.sequence, ssrc=self.ssrc,
                                        timestamp=self.sequence * FRAME_SAMPLES,
                                        payload=self.encoder.encode(frame, FRAME_SAMPLES),
                                        **seal))
            self.sequence += 1
        return out


def listening(key: bytes) -> tuple[VoiceReceiver, dict[int, bytearray]]:
    heard: dict[int, bytearray] = defaultdict(bytearray)
    receiver = VoiceReceiver(keys=lambda: ReceiveKeys(secret_key=key, dave_session=None),
                             on_audio=lambda user, pcm: heard[user].extend(pcm),
                             loop=asyncio.get_running_loop())
    return receiver, heard


async def delivered(receiver: VoiceReceiver, datagrams: list[bytes]) -> None:
    for datagram in datagrams:
        receiver.on_datagram(datagram)
    await asyncio.sleep(0.05)  # the receiver hands audio to the loop


async def received(speech_pcm: bytes, lost: set[int]) -> tuple[bytes, VoiceReceiver]:
    """What the receiver makes of the member's speech when the packets at `lost` go missing."""
    key = os.urandom(32)
    receiver, heard = listening(key)
    receiver.on_speaking(USER, SSRC)
    packets = Member(key).packets(speech_pcm)
    await delivered(receiver, [p for index, p in enumerate(packets) if index not in lost])
    return bytes(heard[USER]), receiver


def error_around(pcm: bytes, reference: bytes, frame: int) -> float:
    """RMS difference from the loss-free decode over the 20 ms of frame `frame`."""
    start, end = frame * 320, (frame + 1) * 320
    a = np.frombuffer(pcm, np.int16)[start:end].astype(np.float32)
    b = np.frombuffer(reference, np.int16)[start:end].astype(np.float32)
    return float(np.sqrt(np.mean((a - b) ** 2)))


async def test_a_lost_packet_is_rebuilt_from_the_next_ones_fec(speech):
    pcm = read_pcm(speech("Seven silver swans swam slowly south."))
    reference, _ = await received(pcm, lost=set())
    rebuilt, receiver = await received(pcm, lost={40})
    assert (receiver.stats.recovered, receiver.stats.concealed) == (1, 0)
    assert len(rebuilt) == len(reference), "the lost 20 ms must be filled, not skipped"
    # The rebuilt frame is the speech that was lost, coarser: far closer to it than silence.
    assert error_around(rebuilt, reference, 40) < 0.5 * error_around(bytes(len(reference)),
                                                                    reference, 40)


async def test_longer_gaps_are_concealed_up_to_a_limit(speech):
    pcm = read_pcm(speech("Seven silver swans swam slowly south."))
    reference, _ = await received(pcm, lost=set())
    filled, receiver = await received(pcm, lost={30, 31, 32})
    assert (receiver.stats.recovered, receiver.stats.concealed) == (1, 2)
    assert len(filled) == len(reference)
    skipped, receiver = await received(pcm, lost=set(range(30, 40)))  # 200 ms: a dropout
    assert (receiver.stats.recovered, receiver.stats.concealed) == (0, 0)
    # Not filled: the stream goes on without those 200 ms (within the resampler's buffering).
    assert abs(len(skipped) - (len(reference) - 10 * 640)) < 640


async def test_a_jump_in_sequence_numbers_is_followed_not_dropped_forever(speech):
    """Regression: after a jump of half the sequence space, every packet was "late"."""
    key = os.urandom(32)
    receiver, heard = listening(key)
    receiver.on_speaking(USER, SSRC)
    member = Member(key, first_sequence=100)
    pcm = read_pcm(speech("One two three."))
    await delivered(receiver, member.packets(pcm))
    before = len(heard[USER])
    member.sequence += 0x8000 + 7
    jumped = member.packets(pcm)
    await delivered(receiver, jumped)
    assert receiver.stats.dropped_late == 2  # the run of packets that showed it was a jump
    assert len(heard[USER]) - before > 0.9 * before


async def test_an_ssrc_given_to_another_member_starts_a_fresh_stream(speech):
    key = os.urandom(32)
    receiver, heard = listening(key)
    pcm = read_pcm(speech("One two three."))
    receiver.on_speaking(USER, SSRC)
    await delivered(receiver, Member(key, first_sequence=5000).packets(pcm))
    receiver.on_speaking(USER + 1, SSRC)  # a new member's client, numbering from low again
    await delivered(receiver, Member(key, first_sequence=10).packets(pcm))
    assert receiver.stats.dropped_late == 0
    assert len(heard[USER + 1]) > 0.9 * len(heard[USER])


async def test_video_packets_are_not_decoded_as_speech(speech):
    key = os.urandom(32)
    receiver, heard = listening(key)
    receiver.on_speaking(USER, SSRC)
    video = Member(key, ssrc=SSRC + 1).packets(read_pcm(speech("One two three.")),
                                              payload_type=101)
    await delivered(receiver, video)
    assert receiver.stats.packets == 0 and not heard
