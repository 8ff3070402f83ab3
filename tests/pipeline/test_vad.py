"""PausingVADProcessor on pipecat's real Silero model and espeak-ng speech."""

import asyncio

from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    InputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test

from tests.helpers import read_pcm
from voxline.pipeline.vad import (
    PausingSileroVADAnalyzer,
    PausingVADProcessor,
    UserSpeechPausedFrame,
    UserSpeechResumedFrame,
)

CHUNK = 640  # 20 ms at 16 kHz
VAD_KINDS = (VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame, UserSpeechPausedFrame,
             UserSpeechResumedFrame)


def _silence(secs: float) -> bytes:
    return bytes(int(16000 * secs) * 2)


async def _vad_frames(models, pcm: bytes) -> list:
    analyzer = PausingSileroVADAnalyzer(session=models.vad, params=VADParams(stop_secs=0.8))
    processor = PausingVADProcessor(vad_analyzer=analyzer, pause_secs=0.1)
    frames = [InputAudioRawFrame(pcm[o: o + CHUNK], 16000, 1) for o in range(0, len(pcm), CHUNK)]
    down, _ = await run_test(processor, frames_to_send=frames,
                             pipeline_params=PipelineParams(audio_in_sample_rate=16000))
    return [f for f in down if isinstance(f, VAD_KINDS)]


async def test_a_pause_comes_before_the_stop(models, speech):
    frames = await _vad_frames(models, _silence(0.3) + read_pcm(speech("What time is it?")) +
                               _silence(1.2))
    kinds = [type(f) for f in frames]
    assert kinds[0] is VADUserStartedSpeakingFrame and kinds[-1] is VADUserStoppedSpeakingFrame
    # The last pause is the one the stop confirms, and nothing resumed after it.
    assert kinds[-2] is UserSpeechPausedFrame, kinds
    assert frames[-2].pause_secs >= 0.1


async def test_speech_within_the_window_resumes_and_pauses_again(models, speech):
    frames = await _vad_frames(models, _silence(0.3) + read_pcm(speech("What time is it")) +
                               _silence(0.2) + read_pcm(speech("in London?")) + _silence(1.2))
    kinds = [type(f) for f in frames]
    # espeak-ng's clips end in silence of their own: the gap is longer than the 0.2 s added,
    # still within the 0.8 s window.
    assert kinds.count(VADUserStartedSpeakingFrame) == 1, kinds
    assert UserSpeechResumedFrame in kinds
    assert kinds[-2:] == [UserSpeechPausedFrame, VADUserStoppedSpeakingFrame], kinds


async def test_sessions_share_the_model_but_not_its_state(models, speech):
    """Two streams at once on the one onnx session: each hears only its own audio."""
    talking, silent = await asyncio.gather(
        _vad_frames(models, _silence(0.3) + read_pcm(speech("What time is it?")) + _silence(1.2)),
        _vad_frames(models, _silence(3.0)),
    )
    assert [type(f) for f in talking].count(VADUserStartedSpeakingFrame) == 1
    assert silent == []
