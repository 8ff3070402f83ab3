"""A stand-in for discord.py's voice player where the test is not about Discord."""

import threading
import time

from voxline.bots.discord.audio_source import BufferedAudioSource


class ThreadPlayer:
    """Plays like discord.py's AudioPlayer: a thread reading 20 ms per tick until b""."""

    def __init__(self):
        self.played: list[int] = []  # first byte of every non-silent frame, in play order
        self.audio = bytearray()  # everything played, 48 kHz stereo s16
        self.is_audible = threading.Event()  # set once 3 non-silent frames were played
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def play(self, source: BufferedAudioSource) -> None:
        assert not self.is_playing(), "discord.py raises 'Already playing audio'"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source, self._stop))
        self._thread.start()

    def _run(self, source, stop):
        while not stop.is_set():
            frame = source.read()
            if not frame:
                return
            self.audio += frame
            if any(frame):
                self.played.append(frame[0])
                if len(self.played) >= 3:
                    self.is_audible.set()
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def join(self, timeout_secs: float) -> None:
        """Wait (in a thread) for playback to end by itself."""
        if self._thread:
            self._thread.join(timeout_secs)

    def is_playing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def is_connected(self) -> bool:
        return True
