"""Server-side echo cancellation: the bot's voice leaking back from a loudspeaker is taken out of
the microphone audio; the user's own voice is not."""

import wave

import numpy as np
import pytest
from pipecat.frames.frames import InputAudioRawFrame
from pipecat.tests.utils import run_test

from voxline.pipeline.echo_cancellation import EchoCanceller, EchoCancellingProcessor
from voxline.pipeline.frames import EchoFoundFrame
from voxline.room import LeakyRoom, Room

FRAME = 320  # 20 ms at 16 kHz, as a client sends it


def _samples(path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-9)


async def _through_room(canceller: EchoCanceller, room: LeakyRoom, bot: np.ndarray,
                        user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Play `bot` into the room frame by frame (as the transport sends it), with `user`
    speaking into the microphone: (what the microphone heard, what the canceller left)."""
    heard, cleaned = [], []
    for i in range(0, min(len(bot), len(user)) - FRAME + 1, FRAME):
        chunk = bot[i: i + FRAME].tobytes()
        room.play(chunk)
        await canceller.played(chunk, 16000)
        mic, _ = room.capture(user[i: i + FRAME].tobytes())
        heard.append(np.frombuffer(mic, np.int16))
        cleaned.append(np.frombuffer(canceller.clean(mic), np.int16))
    return np.concatenate(heard), np.concatenate(cleaned)


@pytest.fixture(scope="module")
def bot_voice(speech) -> np.ndarray:
    text = ("Once upon a time a friendly dragon lived in a cave by the sea. Every morning she "
            "flew over the village and waved to the children, who waved back and laughed.")
    return _samples(speech(text))


@pytest.mark.parametrize("room", [
    Room(delay_secs=0.03, gain_db=-6.0),
    Room(delay_secs=0.06, gain_db=-12.0),
    Room(delay_secs=0.25, gain_db=-20.0, reflections=((0.03, -4.0), (0.07, -9.0))),
], ids=["-6dB-30ms", "-12dB-60ms", "-20dB-250ms"])
async def test_the_bots_echo_is_taken_out(bot_voice, room):
    canceller = EchoCanceller(sample_rate=16000)
    heard, cleaned = await _through_room(canceller, LeakyRoom(room), bot_voice,
                                         np.zeros_like(bot_voice))
    settled = slice(2 * 16000, None)  # the canceller finds the delay in the first second or so
    assert _db(heard[settled]) - _db(cleaned[settled]) > 20


async def test_the_users_voice_over_the_echo_is_kept(bot_voice, speech):
    user = _samples(speech("Wait, can you tell me about the weather tomorrow instead?"))
    user = np.concatenate([np.zeros(3 * 16000, np.int16), user])[: len(bot_voice)]
    canceller = EchoCanceller(sample_rate=16000)
    _, cleaned = await _through_room(canceller, LeakyRoom(Room(gain_db=-12.0)), bot_voice, user)
    speaking = slice(3 * 16000, 3 * 16000 + 16000)
    # Double talk: the user's speech comes through within a few dB (the echo is 12 dB down).
    assert abs(_db(cleaned[speaking]) - _db(user[speaking])) < 6


async def test_reference_at_another_rate_is_resampled(bot_voice):
    canceller = EchoCanceller(sample_rate=16000)
    await canceller.played(np.zeros(480, np.int16).tobytes(), 24000)
    assert len(canceller.clean(bytes(640))) == 640


def test_partial_frames_wait_for_the_rest():
    canceller = EchoCanceller(sample_rate=16000)
    assert canceller.clean(bytes(300)) == b""
    assert len(canceller.clean(bytes(340))) == 640


async def test_without_a_leak_the_users_voice_passes_untouched(bot_voice, speech):
    """Headphones, or a client that cancels echo itself: AEC3 would take the user's first
    words over the bot for echo, so nothing is done until an echo is heard."""
    user = _samples(speech("Wait, can you tell me about the weather tomorrow instead?"))
    user = np.concatenate([np.zeros(16000, np.int16), user])[: len(bot_voice)]
    canceller = EchoCanceller(sample_rate=16000)
    heard, cleaned = await _through_room(canceller, LeakyRoom(None), bot_voice, user)
    assert np.array_equal(heard, cleaned)


@pytest.mark.parametrize("onset_secs", [0.1, 0.3])
async def test_a_user_talking_as_the_bot_starts_is_not_its_echo(bot_voice, speech, onset_secs):
    """Over headphones: the user asked, the bot answers, and the user talks over its first
    words. Their voice rises as the bot's does, but it is no copy of it: nothing is
    cancelled (AEC3 would wipe their words)."""
    question = _samples(speech("Tell me a long story about a friendly dragon."))
    gap = np.zeros(32000, np.int16)
    bot = np.concatenate([np.zeros(len(question) + len(gap), np.int16), bot_voice])
    words = _samples(speech("Wait, stop! Tell me about the weather tomorrow instead."))
    user = np.concatenate([question, gap, np.zeros(int(onset_secs * 16000), np.int16), words])
    user = np.pad(user, (0, max(0, len(bot) - len(user))))[: len(bot)]
    canceller = EchoCanceller(sample_rate=16000)
    heard, cleaned = await _through_room(canceller, LeakyRoom(None), bot, user)
    assert not canceller.is_echo_heard
    assert np.array_equal(heard, cleaned)


async def test_a_leak_is_heard_within_a_second_of_bot_speech(bot_voice):
    canceller = EchoCanceller(sample_rate=16000)
    one_second = bot_voice[:16000]
    await _through_room(canceller, LeakyRoom(Room(gain_db=-20.0, delay_secs=0.25)), one_second,
                        np.zeros_like(one_second))
    assert canceller.is_echo_heard


async def test_the_pipeline_is_told_once_when_the_echo_is_found(bot_voice):
    """The judge of speech over the bot needs to know: what it heard until now was echo."""
    canceller = EchoCanceller(sample_rate=16000)
    one_second = bot_voice[:16000]
    room = LeakyRoom(Room(gain_db=-12.0, delay_secs=0.06))
    await _through_room(canceller, room, one_second, np.zeros_like(one_second))
    assert canceller.is_echo_heard
    mic = [InputAudioRawFrame(bytes(FRAME * 2), 16000, 1) for _ in range(3)]
    down, _ = await run_test(EchoCancellingProcessor(canceller=canceller), frames_to_send=mic)
    assert [type(f) for f in down].count(EchoFoundFrame) == 1
    assert [type(f) for f in down].count(InputAudioRawFrame) == 3
