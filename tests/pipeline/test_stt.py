"""StreamingWhisperSTTService on the real tiny.en model and espeak-ng speech."""

import time

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import SleepFrame, run_test

from tests.helpers import read_pcm, wer
from voxline.agent.services import build_stt
from voxline.models.whisper import Transcript
from voxline.pipeline.frames import EchoFoundFrame, NoWordsFrame
from voxline.pipeline.stt import OVER_THE_BOT_WINDOW_SECS, StreamingWhisperSTTService
from voxline.pipeline.vad import UserSpeechPausedFrame, UserSpeechResumedFrame

SENTENCE = "Can you recommend a good book to read this weekend?"
CHUNK = 640  # 20 ms at 16 kHz


def _spoken(pcm: bytes, *, real_time: bool) -> list:
    """VAD start, the audio (paced like a microphone when `real_time`), VAD stop."""
    frames: list = [VADUserStartedSpeakingFrame()]
    for offset in range(0, len(pcm), CHUNK):
        frames.append(InputAudioRawFrame(pcm[offset: offset + CHUNK], 16000, 1))
        if real_time:
            frames.append(SleepFrame(sleep=0.02))
    frames.append(VADUserStoppedSpeakingFrame(stop_secs=0.5))
    frames.append(SleepFrame(sleep=1.5))  # the final decode runs after the VAD stop
    return frames


async def _run(models, frames, interim_secs=0.5, turn_model=None):
    stt = StreamingWhisperSTTService(
        engine=models.stt, language="en", interim_interval_secs=interim_secs,
        turn_model=turn_model,
    )
    down, _ = await run_test(
        stt, frames_to_send=frames, pipeline_params=PipelineParams(audio_in_sample_rate=16000)
    )
    return down


async def test_final_transcript_has_the_right_words(models, speech):
    down = await _run(models, _spoken(read_pcm(speech(SENTENCE)), real_time=False))
    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert len(finals) == 1, finals
    assert finals[0].finalized
    assert wer(SENTENCE, finals[0].text) <= 0.2, finals[0].text


async def test_interims_arrive_while_speaking_then_one_final(models, speech):
    down = await _run(models, _spoken(read_pcm(speech(SENTENCE)), real_time=True))
    kinds = [type(f) for f in down if isinstance(f, InterimTranscriptionFrame | TranscriptionFrame)]
    interims = [f for f in down if isinstance(f, InterimTranscriptionFrame)]
    assert len(interims) >= 2, "expected interims every ~0.5 s of a 3 s utterance"
    assert kinds[-1] is TranscriptionFrame and kinds.count(TranscriptionFrame) == 1
    # Interims are prefixes of what the user is saying: their words come from the sentence.
    assert set(interims[-1].text.lower().split()) & set(SENTENCE.lower().split())


async def test_interims_give_way_to_another_sessions_decode(models, speech, monkeypatch):
    """The engine is shared: while it is busy (here, another session's decode for the whole
    utterance) no interim is queued behind that work; the final still is."""
    pcm = read_pcm(speech(SENTENCE))
    other_session = bytes(16000 * 2)
    original = models.stt.transcribe

    def slow_for_the_other_session(audio, **kwargs):
        if audio == other_session:
            time.sleep(len(pcm) / 32000 + 0.5)
        return original(audio, **kwargs)

    monkeypatch.setattr(models.stt, "transcribe", slow_for_the_other_session)
    busy = models.stt.decode(other_session)
    down = await _run(models, [*_spoken(pcm, real_time=True), SleepFrame(sleep=2.0)])
    await busy
    assert not [f for f in down if isinstance(f, InterimTranscriptionFrame)]
    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert len(finals) == 1 and wer(SENTENCE, finals[0].text) <= 0.2, finals
    assert not models.stt.is_busy


async def test_silence_gives_no_transcript(models):
    """Whisper says "you" on silence; that must not become a user turn."""
    silence = bytes(16000 * 2 * 2)
    down = await _run(models, _spoken(silence, real_time=False))
    assert not [f for f in down if isinstance(f, TranscriptionFrame | InterimTranscriptionFrame)]
    # ... and the STT says that no words will come (the turn and the barge-in judge go on).
    assert [f for f in down if isinstance(f, NoWordsFrame)]


class _DecodeCounter:
    """Counts the engine's decodes (the speculative final must replace the one after the stop)."""

    def __init__(self, engine, monkeypatch):
        self.count = 0
        self.windows = []  # each decode's min_window_secs (None: the engine's)
        original = engine.transcribe

        def counting(pcm, **kwargs):
            self.count += 1
            self.windows.append(kwargs.get("min_window_secs"))
            return original(pcm, **kwargs)

        monkeypatch.setattr(engine, "transcribe", counting)


def _paused_utterance(pcm: bytes, *, resumed_with: bytes = b"") -> list:
    """Speech, a pause, (optionally more speech after a resume), silence, the VAD stop."""
    frames: list = [VADUserStartedSpeakingFrame()]
    frames += [InputAudioRawFrame(pcm[o: o + CHUNK], 16000, 1) for o in range(0, len(pcm), CHUNK)]
    frames += [UserSpeechPausedFrame(pause_secs=0.1), SleepFrame(sleep=1.0)]
    if resumed_with:
        frames.append(UserSpeechResumedFrame())
        frames += [InputAudioRawFrame(resumed_with[o: o + CHUNK], 16000, 1)
                   for o in range(0, len(resumed_with), CHUNK)]
    frames += [VADUserStoppedSpeakingFrame(stop_secs=0.3), SleepFrame(sleep=1.5)]
    return frames


async def test_a_pause_decodes_speculatively_and_the_stop_reuses_it(models, speech, monkeypatch):
    decodes = _DecodeCounter(models.stt, monkeypatch)
    down = await _run(models, _paused_utterance(read_pcm(speech(SENTENCE))), interim_secs=5.0)
    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert len(finals) == 1 and wer(SENTENCE, finals[0].text) <= 0.2, finals
    assert decodes.count == 1, "the decode started at the pause must serve as the final"


async def test_speech_after_a_pause_voids_the_speculative_decode(models, speech, monkeypatch):
    decodes = _DecodeCounter(models.stt, monkeypatch)
    first, rest = "Can you recommend a good book", "to read this weekend?"
    down = await _run(models, _paused_utterance(read_pcm(speech(first)),
                                                resumed_with=read_pcm(speech(rest))),
                      interim_secs=5.0)
    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert len(finals) == 1, finals
    assert "weekend" in finals[0].text.lower(), "the final must hear the speech after the pause"
    assert decodes.count == 2


async def test_a_pause_decode_is_also_the_next_interim(models, speech, monkeypatch):
    decodes = _DecodeCounter(models.stt, monkeypatch)
    down = await _run(models, _paused_utterance(read_pcm(speech(SENTENCE))), interim_secs=0.4)
    interims = [f for f in down if isinstance(f, InterimTranscriptionFrame)]
    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert interims and interims[0].text == finals[0].text
    assert decodes.count == 1, "the partial and the final both come from the pause's decode"


async def test_a_backchannel_over_the_bot_is_decoded_with_the_short_window(models, speech,
                                                                          monkeypatch):
    """Speech that begins over the bot and pauses soon is what keeps the bot paused until its
    words are read: its pause is decoded with the short window; other speech is not."""
    decodes = _DecodeCounter(models.stt, monkeypatch)
    short = _paused_utterance(read_pcm(speech("Uh-huh.")))
    down = await _run(models, [BotStartedSpeakingFrame(), *short], interim_secs=5.0)
    assert decodes.windows == [OVER_THE_BOT_WINDOW_SECS]
    assert [f for f in down if isinstance(f, TranscriptionFrame | NoWordsFrame)]
    await _run(models, short, interim_secs=5.0)  # the bot silent: a turn like any other
    longer = _paused_utterance(read_pcm(speech(SENTENCE)))
    await _run(models, [BotStartedSpeakingFrame(), *longer], interim_secs=5.0)
    assert decodes.windows == [OVER_THE_BOT_WINDOW_SECS, None, None]


async def test_a_short_window_that_loops_is_decoded_again_for_the_final(models, speech,
                                                                         monkeypatch):
    """A short window can loop ("wait wait wait …"): the judge reads its words once, and the
    final transcript, which the LLM reads, comes from a decode with the engine's window."""
    original = models.stt.transcribe

    def looping_when_quick(pcm, **kwargs):
        if kwargs.get("min_window_secs"):
            return Transcript("Wait wait wait wait wait wait", 1.0, 0.1, is_quick=True)
        return original(pcm, **kwargs)

    monkeypatch.setattr(models.stt, "transcribe", looping_when_quick)
    said = "Wait, stop."
    down = await _run(models, [BotStartedSpeakingFrame(),
                               *_paused_utterance(read_pcm(speech(said)))], interim_secs=0.4)
    interims = [f.text for f in down if isinstance(f, InterimTranscriptionFrame)]
    [final] = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert interims[0] == "Wait", interims
    assert wer(said, final.text) <= 0.5 and "wait wait" not in final.text.lower(), final.text


async def test_the_microphone_audio_goes_past_the_stt_only_for_a_recorder(models, settings, speech):
    """After the STT only a recorder reads the user's audio; without one, each 20 ms frame
    would cost every later processor and observer a hop for nothing."""
    frames = _spoken(read_pcm(speech(SENTENCE)), real_time=False)
    for recording in (False, True):
        down, _ = await run_test(
            build_stt(models, settings.stt, audio_passthrough=recording), frames_to_send=frames,
            pipeline_params=PipelineParams(audio_in_sample_rate=16000))
        audio = [f for f in down if isinstance(f, InputAudioRawFrame)]
        assert len(audio) == (len(frames) - 3 if recording else 0), recording
        assert [f for f in down if isinstance(f, TranscriptionFrame)], "still transcribed"


async def test_words_smart_turn_must_judge_go_out_before_its_verdict(models, speech):
    """"Wait" neither sounds finished nor unfinished: smart-turn judges it (~0.1 s), but the
    words go out first, as an interim (speech over the bot is judged on them)."""
    assert models.turn is not None
    down = await _run(models, _spoken(read_pcm(speech("Wait")), real_time=False),
                      interim_secs=5.0, turn_model=models.turn)
    words = [f for f in down if isinstance(f, InterimTranscriptionFrame | TranscriptionFrame)]
    assert [type(f) for f in words] == [InterimTranscriptionFrame, TranscriptionFrame], words
    assert words[0].text == words[1].text and "wait" in words[0].text.lower()
    assert words[1].result is not None  # the verdict came with the final


async def test_the_audio_before_the_echo_was_found_is_not_transcribed(models, speech):
    """Until the echo canceller starts, the bot's own voice reaches the STT: once the echo is
    found, the utterance so far is dropped, and only what follows is transcribed."""
    echo = read_pcm(speech("Once upon a time a friendly dragon lived by the sea."))
    user = read_pcm(speech(SENTENCE))
    frames: list = [VADUserStartedSpeakingFrame()]
    frames += [InputAudioRawFrame(echo[o: o + CHUNK], 16000, 1) for o in range(0, len(echo), CHUNK)]
    frames.append(EchoFoundFrame())
    frames += [InputAudioRawFrame(user[o: o + CHUNK], 16000, 1) for o in range(0, len(user), CHUNK)]
    frames += [VADUserStoppedSpeakingFrame(stop_secs=0.3), SleepFrame(sleep=1.5)]
    down = await _run(models, frames, interim_secs=5.0)
    [final] = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert wer(SENTENCE, final.text) <= 0.2, final.text
    assert not {"dragon", "upon"} & set(final.text.lower().split()), final.text
