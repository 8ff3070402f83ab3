"""Silero VAD that also says when the user *pauses*, before the silence window decides the turn.

The turn ends `stop_secs` after the last word; the transcript of that speech can start decoding
the moment a pause begins. `UserSpeechPausedFrame` lets the STT decode speculatively during the
window and `UserSpeechResumedFrame` tells it the guess is void (more speech came).
"""

from dataclasses import dataclass

import onnxruntime
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADState
from pipecat.frames.frames import Frame, InputAudioRawFrame, SystemFrame
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection


@dataclass
class UserSpeechPausedFrame(SystemFrame):
    """The user has been silent for `pause_secs`; the turn may be over."""

    pause_secs: float = 0.0


@dataclass
class UserSpeechResumedFrame(SystemFrame):
    """The user spoke again before the silence window closed: the pause was not the end."""


class SileroStream(SileroOnnxModel):
    """pipecat's Silero wrapper on a shared session: the recurrent state is this stream's own,
    the weights are not. pipecat loads an InferenceSession per analyzer, i.e. per session;
    creating and dropping one for every conversation kept growing the server's RSS.
    `InferenceSession.run` is thread-safe, and each analyzer calls it on the event loop."""

    def __init__(self, session: onnxruntime.InferenceSession):  # no super(): it would load
        self.session = session
        self.reset_states()
        self.sample_rates = [8000, 16000]


class PausingSileroVADAnalyzer(SileroVADAnalyzer):
    """pipecat's Silero analyzer on the process's shared model, remembering its raw state and
    how long it has been stopping.

    pipecat's VAD controller only reports SPEAKING and QUIET; STOPPING (speech over, silence
    window still open) is what a speculative decode needs.
    """

    def __init__(self, *, session: onnxruntime.InferenceSession, **kwargs):
        # Not SileroVADAnalyzer.__init__: it loads a model of its own (see SileroStream).
        VADAnalyzer.__init__(self, **kwargs)
        self._model = SileroStream(session)
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self.state = VADState.QUIET
        self.stopping_secs = 0.0

    async def analyze_audio(self, buffer: bytes) -> VADState:
        """Analyze like Silero does, but on the event loop: a 32 ms window takes ~0.2 ms,
        less than pipecat's hop to a thread of its own per session (with four sessions those
        hops, 200 a second, each a GIL hand-over, cost the loop more than Silero itself).
        Keep the state and the silence so far."""
        self.state = self._run_analyzer(buffer)
        windows = self._vad_stopping_count if self.state == VADState.STOPPING else 0
        self.stopping_secs = windows * self._vad_frames / self.sample_rate
        return self.state


class PausingVADProcessor(VADProcessor):
    """pipecat's VAD processor plus pause/resume frames, once per pause of `pause_secs`."""

    def __init__(self, *, vad_analyzer: PausingSileroVADAnalyzer, pause_secs: float, **kwargs):
        super().__init__(vad_analyzer=vad_analyzer, **kwargs)
        self._analyzer = vad_analyzer
        self._pause_secs = pause_secs
        self._paused = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """VAD as usual; then, on audio, announce a pause or its end."""
        await super().process_frame(frame, direction)
        if not isinstance(frame, InputAudioRawFrame):
            return
        stopping = self._analyzer.state == VADState.STOPPING
        if stopping and not self._paused and self._analyzer.stopping_secs >= self._pause_secs:
            self._paused = True
            await self.broadcast_frame(UserSpeechPausedFrame,
                                       pause_secs=self._analyzer.stopping_secs)
        elif self._paused and not stopping:
            self._paused = False
            if self._analyzer.state == VADState.SPEAKING:
                await self.broadcast_frame(UserSpeechResumedFrame)
