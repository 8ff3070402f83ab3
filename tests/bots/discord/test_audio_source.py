"""The bot's AudioSource: discord.py's player thread reads it every 20 ms and must never wait."""

import threading
import time

from voxline.bots.discord.audio_source import FRAME_BYTES, SILENCE, BufferedAudioSource


def test_read_returns_audio_then_silence_on_underrun_then_ends_after_finish():
    source = BufferedAudioSource()
    source.push(b"\x01" * (FRAME_BYTES + 100))
    assert source.read() == b"\x01" * FRAME_BYTES
    assert source.read() == SILENCE  # a partial frame waits for more while the reply goes on
    assert source.silent_reads == 1
    source.finish()
    last = source.read()
    assert last[:100] == b"\x01" * 100 and len(last) == FRAME_BYTES  # the tail, padded
    assert source.read() == b""  # ends playback


def test_clear_drops_everything_not_played():
    source = BufferedAudioSource()
    source.push(b"\x02" * FRAME_BYTES * 5)
    source.clear()
    assert source.buffered_secs == 0
    assert source.read() == SILENCE


def test_read_never_blocks_longer_than_1ms_even_when_tts_is_slow():
    """A slow TTS leaves the buffer dry or feeds it in bursts from another thread; the player
    thread's read must still return at once every time."""
    source = BufferedAudioSource()
    stop = threading.Event()

    def slow_tts():
        while not stop.is_set():
            source.push(b"\x03" * FRAME_BYTES * 50)  # a burst of 1 s
            time.sleep(0.05)

    writer = threading.Thread(target=slow_tts)
    writer.start()
    try:
        slowest = 0.0
        for _ in range(2000):
            started = time.perf_counter()
            frame = source.read()
            slowest = max(slowest, time.perf_counter() - started)
            assert len(frame) == FRAME_BYTES
    finally:
        stop.set()
        writer.join()
    assert slowest < 0.001, f"read() took {slowest * 1000:.2f} ms"
