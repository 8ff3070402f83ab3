"""Speech over the bot: backchannels and sounds keep it talking, words interrupt it."""

import asyncio
from types import SimpleNamespace

import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.tests.utils import run_test
from pipecat.turns.types import ProcessFrameResult
from pipecat.utils.asyncio.task_manager import TaskManager

from voxline.config.voice import DEFAULT_BACKCHANNELS
from voxline.pipeline.barge_in import Backchannels, BargeInUserTurnStartStrategy, RecentBotWords
from voxline.pipeline.frames import BotPausedFrame, BotResumedFrame, EchoFoundFrame, NoWordsFrame
from voxline.pipeline.playback_hold import PlaybackHold, StaleReplyFilter
from voxline.pipeline.vad import UserSpeechPausedFrame, UserSpeechResumedFrame

BACKCHANNELS = Backchannels(DEFAULT_BACKCHANNELS)


@pytest.mark.parametrize("text", ["Yeah.", "Okay", "Uh-huh.", "Mm-hmm.", "Right.", "I see.",
                                  "Sure!", "Oh, okay.", "Yeah, yeah, right.", "(coughs)",
                                  "[laughter]", "", "MHM", "Mmmmm", "M M M M", "Mm-mm.",
                                  "M-H-M", "Hmmm."])
def test_backchannels_and_sounds(text):
    assert BACKCHANNELS.covers(text)


def test_any_spelling_of_a_hum_counts_only_if_hums_are_listed():
    assert not Backchannels(["yeah"]).covers("Mmmm.")
    assert Backchannels(["yeah", "hmm"]).covers("Mmmm, yeah.")


@pytest.mark.parametrize("text", ["Wait.", "Stop!", "Yeah, but what about Rome?", "Okay stop",
                                  "I see a problem with that.", "No.", "Hold on"])
def test_words_that_interrupt(text):
    assert not BACKCHANNELS.covers(text)


def test_the_list_is_configurable():
    assert Backchannels(["gotcha"]).covers("Gotcha.")
    assert not Backchannels(["gotcha"]).covers("Yeah.")


class Judge:
    """The strategy with short times, and what it did."""

    def __init__(self, *, enable_interruptions=True, words_wait_secs=0.1):
        self.hold, self.bot_words = PlaybackHold(), RecentBotWords()
        self.strategy = BargeInUserTurnStartStrategy(
            hold=self.hold, backchannels=BACKCHANNELS, bot_words=self.bot_words,
            hold_after_secs=0.1, max_backchannel_secs=0.5, words_wait_secs=words_wait_secs,
            enable_interruptions=enable_interruptions)
        self.turns, self.broadcasts, self.resets = 0, [], 0

    async def __aenter__(self):
        await self.strategy.setup(SimpleNamespace(task_manager=TaskManager()))

        async def started(_strategy, _params):
            self.turns += 1
            await self.strategy.handle_user_turn_started()  # as the controller does

        async def broadcast(_strategy, frame_cls, **_kwargs):
            self.broadcasts.append(frame_cls)

        async def reset(_strategy):
            self.resets += 1

        self.strategy.add_event_handler("on_user_turn_started", started)
        self.strategy.add_event_handler("on_broadcast_frame", broadcast)
        self.strategy.add_event_handler("on_reset_aggregation", reset)
        return self

    async def __aexit__(self, *_):
        await self.strategy.cleanup()

    async def see(self, *frames) -> list[ProcessFrameResult]:
        return [await self.strategy.process_frame(f) for f in frames]


def _speech() -> VADUserStartedSpeakingFrame:
    return VADUserStartedSpeakingFrame(start_secs=0.0)


async def test_speech_while_the_bot_is_quiet_starts_the_turn_at_once():
    async with Judge() as judge:
        assert await judge.see(_speech()) == [ProcessFrameResult.STOP]
        assert judge.turns == 1


async def test_a_short_backchannel_neither_pauses_nor_interrupts():
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech(), UserSpeechPausedFrame(),
                        InterimTranscriptionFrame("Uh-huh.", "", ""))
        await asyncio.sleep(0.3)
        assert judge.turns == 0 and not judge.hold.is_held and judge.broadcasts == []
        # Its final transcript comes later: consumed, and kept out of the user's turn.
        result = await judge.see(TranscriptionFrame("Uh-huh.", "", ""))
        assert result == [ProcessFrameResult.STOP] and judge.resets == 1 and judge.turns == 0


async def test_a_longer_backchannel_pauses_the_bot_and_resumes_it():
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech())
        await asyncio.sleep(0.15)
        assert judge.hold.is_held and judge.broadcasts == [BotPausedFrame]
        await judge.see(UserSpeechPausedFrame(), InterimTranscriptionFrame("Mm-hmm.", "", ""))
        assert not judge.hold.is_held and judge.broadcasts == [BotPausedFrame, BotResumedFrame]
        assert await judge.hold.admit()  # the held chunk plays
        assert judge.turns == 0


async def test_a_choppy_voice_is_still_held_on_time():
    """A short pause before the hold (a voice broken up by the echo canceller) must not put
    the hold off until the interruption."""
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech())
        await asyncio.sleep(0.03)
        await judge.see(UserSpeechPausedFrame())
        await asyncio.sleep(0.03)
        await judge.see(UserSpeechResumedFrame())
        await asyncio.sleep(0.09)  # past hold_after_secs from the onset
        assert judge.hold.is_held and judge.broadcasts == [BotPausedFrame]


async def test_the_stt_finding_no_words_resumes_the_bot_at_once():
    async with Judge(words_wait_secs=5.0) as judge:  # the fallback timer plays no part here
        await judge.see(BotStartedSpeakingFrame(), _speech())
        await asyncio.sleep(0.15)
        await judge.see(UserSpeechPausedFrame(), NoWordsFrame())
        assert not judge.hold.is_held and judge.broadcasts[-1] is BotResumedFrame
        assert judge.turns == 0


async def test_a_cough_resumes_the_bot_when_no_words_come():
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech())
        await asyncio.sleep(0.15)
        await judge.see(UserSpeechPausedFrame())
        await asyncio.sleep(0.2)  # words_wait_secs without a transcript
        assert not judge.hold.is_held and judge.broadcasts[-1] is BotResumedFrame
        assert judge.turns == 0


async def test_speech_going_on_after_it_was_dismissed_is_judged_anew():
    """A short "Wait," the STT found no words in, then the rest of the sentence within the
    same VAD segment: the rest is held and interrupts like any speech over the bot."""
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech())
        await asyncio.sleep(0.05)
        await judge.see(UserSpeechPausedFrame(), NoWordsFrame())
        assert not judge.hold.is_held and judge.turns == 0
        await asyncio.sleep(0.05)
        await judge.see(UserSpeechResumedFrame())
        await asyncio.sleep(0.15)  # past hold_after_secs from the resumption
        assert judge.hold.is_held and judge.turns == 0
        await judge.see(InterimTranscriptionFrame("what about the other one", "", ""))
        assert judge.turns == 1


async def test_speech_going_on_after_a_dismissal_once_the_bot_is_quiet_starts_the_turn():
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech(), UserSpeechPausedFrame(),
                        NoWordsFrame(), BotStoppedSpeakingFrame(), UserSpeechResumedFrame())
        assert judge.turns == 1


async def test_speech_heard_before_the_echo_was_found_is_that_echo():
    """The client's loudspeaker leaks into its microphone; until the canceller finds that out,
    the bot's first words reach the VAD. Whatever the STT makes of them, they are dropped."""
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech())
        await asyncio.sleep(0.15)
        assert judge.hold.is_held
        await judge.see(EchoFoundFrame())
        assert not judge.hold.is_held and judge.broadcasts[-1] is BotResumedFrame
        results = await judge.see(UserSpeechPausedFrame(),
                                  InterimTranscriptionFrame("one so", "", ""),
                                  TranscriptionFrame("one so", "", ""))
        assert results[1:] == [ProcessFrameResult.STOP] * 2
        assert judge.turns == 0 and judge.resets == 1
        # The user's own speech afterwards is judged as usual.
        await judge.see(_speech(), InterimTranscriptionFrame("Hold on a second", "", ""))
        assert judge.turns == 1


async def test_speech_the_vad_reports_after_the_echo_was_found_but_began_before_is_echo():
    """The VAD says speech started `start_secs` after it did: speech it reports just after the
    echo was found began in the echo, before the canceller took it out."""
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), EchoFoundFrame(),
                        VADUserStartedSpeakingFrame(start_secs=0.2))
        await asyncio.sleep(0.15)
        assert not judge.hold.is_held  # not judged at all
        await judge.see(UserSpeechPausedFrame(), TranscriptionFrame("What's the...", "", ""))
        assert judge.turns == 0 and judge.resets == 1
        # Speech that begins once the canceller works is the user's, judged as usual.
        await asyncio.sleep(0.05)
        await judge.see(VADUserStartedSpeakingFrame(start_secs=0.0),
                        InterimTranscriptionFrame("Hold on a second", "", ""))
        assert judge.turns == 1


async def test_words_interrupt_and_the_held_audio_is_never_played(monkeypatch):
    monkeypatch.setattr("voxline.pipeline.playback_hold.DROP_SECS", 0.2)
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech())
        await asyncio.sleep(0.15)
        await judge.see(InterimTranscriptionFrame("Wait, what about", "", ""))
        assert judge.turns == 1
        assert not await judge.hold.admit()  # dropped: the interruption is on its way
        await asyncio.sleep(0.25)  # ... and has emptied the output: the next reply plays
        assert await judge.hold.admit()
        assert BotResumedFrame not in judge.broadcasts


async def test_speech_longer_than_any_backchannel_interrupts_without_words():
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech())
        await asyncio.sleep(0.3)
        assert judge.turns == 0
        await judge.see(UserSpeechPausedFrame(), UserSpeechResumedFrame())  # a breath
        await asyncio.sleep(0.35)
        assert judge.turns == 1


async def test_a_late_final_with_words_still_interrupts():
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech(), UserSpeechPausedFrame())
        await asyncio.sleep(0.2)  # no words in time: taken for a sound
        assert judge.turns == 0
        await judge.see(TranscriptionFrame("Stop.", "", ""))
        assert judge.turns == 1


async def test_without_interruptions_speech_over_the_bot_is_not_judged():
    async with Judge(enable_interruptions=False) as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech())
        await asyncio.sleep(0.15)
        assert not judge.hold.is_held


async def test_a_hold_never_outlasts_its_limit(monkeypatch):
    monkeypatch.setattr("voxline.pipeline.playback_hold.MAX_HOLD_SECS", 0.05)
    hold = PlaybackHold()
    hold.hold()
    assert await hold.admit() and not hold.is_held


async def test_a_dropped_replys_late_frames_never_reach_the_output():
    """What the interrupted reply still synthesizes after the drop is discarded before the
    output transport (which would announce it as the bot speaking); the answer plays."""
    hold = PlaybackHold()
    assert hold.admits_reply_frame(_audio("old"))  # the old reply is playing
    hold.drop()
    late_and_new = [_audio("old"), TTSTextFrame("Rome is", "sentence", context_id="old"),
                    TTSStoppedFrame(context_id="old"), TTSStartedFrame(context_id="new"),
                    _audio("new"), TTSTextFrame("Paris", "sentence", context_id="new")]
    down, _ = await run_test(StaleReplyFilter(hold=hold), frames_to_send=late_and_new)
    kept = [f for f in down if getattr(f, "context_id", None) is not None]
    assert [(type(f), f.context_id) for f in kept] == [
        (TTSStartedFrame, "new"), (TTSAudioRawFrame, "new"), (TTSTextFrame, "new")]


def _audio(reply: str) -> TTSAudioRawFrame:
    return TTSAudioRawFrame(b"\x01\x00" * 320, 16000, 1, context_id=reply)


def test_the_bots_own_words_coming_back_are_its_echo():
    words = RecentBotWords()
    words.add("Once upon a time, a friendly dragon lived at the end of the month")
    assert words.echoes("the end of the month.")
    assert words.echoes("A friendly dragon")
    assert words.echoes("Once apart.")
    assert not words.echoes("Wait, stop!")
    assert not words.echoes("")


def test_words_that_stop_a_speaker_are_the_users_even_if_the_bot_said_them():
    """A story's "she could not wait" then the user's "Wait, stop.": the user's (a flaky
    interruption in the turn-taking bench, when the interruption landed after that word)."""
    words = RecentBotWords()
    words.add("She could not wait to stop by the river, so she said no to the boat")
    assert not words.echoes("Wait, stop.")
    assert not words.echoes("No, wait.")
    assert words.echoes("by the river")


async def test_the_bots_echo_resumes_it_instead_of_interrupting():
    async with Judge() as judge:
        judge.bot_words.add("Once upon a time, a friendly dragon lived in a cave.")
        await judge.see(BotStartedSpeakingFrame(), _speech())
        await asyncio.sleep(0.15)
        await judge.see(UserSpeechPausedFrame(), InterimTranscriptionFrame("a friendly dragon",
                                                                           "", ""))
        assert judge.turns == 0 and not judge.hold.is_held


async def test_synthesis_waits_while_speech_over_the_bot_is_judged():
    """The TTS waits on the hold before each sentence: from the moment speech over the bot is
    judged until it is decided, dismissed or an interruption."""
    async with Judge() as judge:
        assert not judge.hold.is_deciding
        await judge.see(BotStartedSpeakingFrame(), _speech())
        assert judge.hold.is_deciding and not judge.hold.is_held  # judged, not yet held
        await asyncio.sleep(0.15)
        assert judge.hold.is_held and judge.hold.is_deciding
        waiting = asyncio.create_task(judge.hold.wait_decided(5.0))
        await judge.see(UserSpeechPausedFrame(), InterimTranscriptionFrame("Okay.", "", ""))
        await asyncio.wait_for(waiting, 1.0)
        assert not judge.hold.is_deciding
    async with Judge() as judge:
        await judge.see(BotStartedSpeakingFrame(), _speech())
        await judge.see(InterimTranscriptionFrame("Wait, stop.", "", ""))
        assert not judge.hold.is_deciding  # interrupted: nothing more to wait for
