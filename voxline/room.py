"""A room where the loudspeaker leaks into the microphone: a laptop without headphones, a kiosk.

Tests, the turn-taking bench and `voxline talk`'s wav-backed microphone play the bot's audio
through it: the speaker and the microphone share one clock (each captured frame is as long as
the audio played meanwhile), and what the speaker plays comes back into the microphone after
`delay_secs`, `gain_db` quieter, plus its reflections.
"""

from collections import deque
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Room:
    """How the speaker's sound reaches the microphone. Reflections are (extra delay in seconds
    after the direct path, level in dB relative to it)."""

    delay_secs: float = 0.06
    gain_db: float = -12.0
    reflections: tuple[tuple[float, float], ...] = ((0.017, -6.0), (0.043, -11.0))
    sample_rate: int = SAMPLE_RATE

    def impulse_response(self) -> np.ndarray:
        """The echo path as taps on the played samples (float, one per sample of delay)."""
        direct = 10 ** (self.gain_db / 20)
        paths = [(self.delay_secs, direct)] + [
            (self.delay_secs + extra, direct * 10 ** (level_db / 20))
            for extra, level_db in self.reflections
        ]
        taps = np.zeros(round(max(d for d, _ in paths) * self.sample_rate) + 1, np.float32)
        for delay, gain in paths:
            taps[round(delay * self.sample_rate)] += gain
        return taps


class LeakyRoom:
    """The speaker and the microphone of one room, 16-bit mono PCM at the room's rate.

    `play()` queues audio for the speaker; each `capture()` of a microphone frame plays the same
    duration of that queue (silence when it runs dry) and mixes its echo into the frame.
    """

    def __init__(self, room: Room | None):
        """`room` None: headphones, nothing leaks."""
        self._taps = room.impulse_response() if room else np.zeros(1, np.float32)
        self._queue: deque[np.ndarray] = deque()
        self._queued = 0
        # The last len(taps) - 1 played samples: the echo of a frame reaches into the next.
        self._history = np.zeros(len(self._taps) - 1, np.float32)
        self.played_samples = 0  # of bot audio actually played (not silence)

    @property
    def queued_secs(self) -> float:
        """Bot audio waiting to be played."""
        return self._queued / SAMPLE_RATE

    def play(self, pcm: bytes) -> None:
        """Queue bot audio for the speaker."""
        samples = np.frombuffer(pcm, np.int16).astype(np.float32)
        if len(samples):
            self._queue.append(samples)
            self._queued += len(samples)

    def clear(self) -> None:
        """Drop what is queued (a client stops playback when the bot is interrupted)."""
        self._queue.clear()
        self._queued = 0

    def capture(self, mic_pcm: bytes) -> tuple[bytes, bytes]:
        """The microphone frame with the room's echo in it, and what the speaker played
        meanwhile (both as long as `mic_pcm`)."""
        mic = np.frombuffer(mic_pcm, np.int16).astype(np.float32)
        played = self._take(len(mic))
        signal = np.concatenate([self._history, played])
        echo = np.convolve(signal, self._taps, mode="full")[len(self._history): len(signal)]
        if len(self._history):
            self._history = signal[-len(self._history):]
        mixed = np.clip(mic + echo, -32768, 32767).astype(np.int16)
        return mixed.tobytes(), played.astype(np.int16).tobytes()

    def _take(self, count: int) -> np.ndarray:
        out = np.zeros(count, np.float32)
        filled = 0
        while filled < count and self._queue:
            head = self._queue[0]
            n = min(count - filled, len(head))
            out[filled: filled + n] = head[:n]
            filled += n
            if n == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[n:]
        self._queued -= filled
        self.played_samples += filled
        return out
