"""Speech over the bot: a real interruption, or a backchannel ("uh-huh") or a cough that must
not cut the reply.

The VAD alone cannot tell them apart, so speech that starts while the bot is talking is judged:
the bot keeps talking while it is short, is held (paused) once it lasts `hold_after_secs`, and
the words decide. A backchannel, no words at all, or the bot's own words (its echo) resume the
reply where it stopped; other words, or speech longer than any backchannel, interrupt it.
Speech heard before the echo canceller found the client's loudspeaker (`EchoFoundFrame`) was
that echo: the reply resumes, and its words are dropped.
"""

import asyncio
import re
import time
from collections import deque
from collections.abc import Iterable

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_start.base_user_turn_start_strategy import BaseUserTurnStartStrategy

from voxline.pipeline.frames import BotPausedFrame, BotResumedFrame, EchoFoundFrame, NoWordsFrame
from voxline.pipeline.playback_hold import PlaybackHold
from voxline.pipeline.vad import UserSpeechPausedFrame, UserSpeechResumedFrame

# What Whisper writes for sounds that are not words: "(coughs)", "[laughter]", "*sighs*".
_SOUND_TAG = re.compile(r"[(\[*][^)\]*]*[)\]*]")
_NOT_A_LETTER = re.compile(r"[^a-z' ]+")
# A hum, however Whisper spells it: "Mmmmm", "M M M", "Mm-mm", "hmmm", "M-H-M".
_HUM = re.compile(r"[mh]*m[mh]*|h")


def _words(text: str) -> list[str]:
    text = _SOUND_TAG.sub(" ", text.lower()).replace("-", " ")
    return _NOT_A_LETTER.sub(" ", text).split()


class Backchannels:
    """The phrases a listener says to keep a speaker going (agent.backchannels)."""

    def __init__(self, phrases: Iterable[str]):
        self._phrases = sorted({tuple(_words(p)) for p in phrases if _words(p)},
                               key=len, reverse=True)
        # A listed hum ("mm", "hmm") stands for every spelling of one.
        self._takes_hums = any(_HUM.fullmatch(w) for p in self._phrases for w in p)

    def covers(self, text: str) -> bool:
        """True when `text` says nothing but backchannels ("Yeah, okay.", "Mm-hmm."), or no
        words at all (a cough Whisper wrote as "(coughs)")."""
        words, at = _words(text), 0
        while at < len(words):
            if self._takes_hums and _HUM.fullmatch(words[at]):
                at += 1
                continue
            match = next((p for p in self._phrases if tuple(words[at: at + len(p)]) == p), None)
            if match is None:
                return False
            at += len(match)
        return True


# What people say to stop a speaker: theirs even when the bot has just said the same word
# ("I can't wait" in a story, then the user's "Wait, stop."). Missing a real stop is worse than
# pausing for an echo.
INTERRUPTING_WORDS = frozenset({"wait", "stop", "hold", "hang", "sorry", "excuse", "actually",
                                "no"})


class RecentBotWords:
    """The words the bot has been saying, as synthesized (a little ahead of what plays), so that
    its own voice coming back through a client's microphone — what echo cancellation left, or
    a client without it — is not taken for the user's. Shared by `BotWordsProcessor` (after the
    TTS) and the judge of one session."""

    def __init__(self, max_words: int = 80):
        self._words: deque[str] = deque(maxlen=max_words)

    def add(self, text: str) -> None:
        """Remember a piece of the bot's reply."""
        self._words.extend(_words(text))

    def echoes(self, text: str, *, min_share: float = 0.5) -> bool:
        """True when most words of `text` are ones the bot has just said (Whisper mishears
        a faint echo: "Once upon a time" came back as "Once apart.")."""
        words = _words(text)
        if not words:
            return False
        said = set(self._words) - INTERRUPTING_WORDS
        return sum(w in said for w in words) >= min_share * len(words)


class BotWordsProcessor(FrameProcessor):
    """Tells `RecentBotWords` what the TTS is about to play."""

    def __init__(self, *, bot_words: RecentBotWords, **kwargs):
        super().__init__(**kwargs)
        self._bot_words = bot_words

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Pass every frame on; remember the bot's words."""
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, TTSTextFrame) and direction == FrameDirection.DOWNSTREAM:
            self._bot_words.add(frame.text)


class BargeInUserTurnStartStrategy(BaseUserTurnStartStrategy):
    """Starts the user's turn on speech, like pipecat's VAD strategy, except over the bot's
    speech, which is judged first (module docstring). Put it first among the start strategies:
    it consumes (STOP) the frames of speech it is judging.

    Times are from the speech's onset (the VAD reports it `start_secs` late), except
    `words_wait_secs`: how long after the speech pauses its transcript may still come before
    it is taken to have no words, if the STT does not say so first (`NoWordsFrame`).
    """

    def __init__(self, *, hold: PlaybackHold, backchannels: Backchannels,
                 bot_words: RecentBotWords | None = None, hold_after_secs: float = 0.4,
                 max_backchannel_secs: float = 1.2, words_wait_secs: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self._hold = hold
        self._backchannels = backchannels
        self._bot_words = bot_words or RecentBotWords()
        self._hold_after_secs = hold_after_secs
        self._max_backchannel_secs = max_backchannel_secs
        self._words_wait_secs = words_wait_secs
        self._is_bot_speaking = False
        self._is_judging = False
        self._is_dismissed = False  # the last speech over the bot was a backchannel
        self._is_echo = False  # ... was the bot's echo, heard before the canceller started
        self._echo_found_at: float | None = None
        self._is_paused = False  # clients were told the bot paused
        self._is_user_pausing = False
        self._onset = 0.0
        self._judge_task: asyncio.Task | None = None

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        """Judge speech over the bot; start the turn on any other speech."""
        if isinstance(frame, BotStartedSpeakingFrame):
            self._is_bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._is_bot_speaking = False
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            return await self._on_speech_started(frame)
        elif isinstance(frame, UserSpeechPausedFrame) and self._is_judging:
            self._is_user_pausing = True
            await self._restart_judge(self._words_wait_secs, self._no_words)
        elif isinstance(frame, UserSpeechResumedFrame) and self._is_judging:
            self._is_user_pausing = False
            if self._hold.is_held:
                await self._restart_judge(self._until(self._max_backchannel_secs),
                                          self._too_long)
            else:  # paused before the hold (a choppy voice): the bot is still held on time
                await self._restart_judge(self._until(self._hold_after_secs),
                                          self._held_too_long)
        elif isinstance(frame, UserSpeechResumedFrame) and self._is_dismissed:
            await self._on_speech_resumed_after_dismissal()
        elif isinstance(frame, EchoFoundFrame):
            self._echo_found_at = time.monotonic()
            if self._is_judging or self._is_dismissed:
                logger.debug("{}: the speech over the bot was its echo", self)
                self._is_echo = True
                await self._dismiss()
        elif isinstance(frame, NoWordsFrame) and self._is_judging and self._is_user_pausing:
            await self._cancel_judge()
            await self._no_words()
        elif isinstance(frame, (InterimTranscriptionFrame, TranscriptionFrame)):
            return await self._on_words(frame)
        return ProcessFrameResult.CONTINUE

    async def handle_user_turn_started(self):
        """Whatever started the turn, the judging is over."""
        await self._end_judging()
        self._is_dismissed = self._is_echo = False

    async def cleanup(self):
        """Stop the judge's timer; never leave the bot held."""
        await self._cancel_judge()
        self._hold.judging(False)
        self._hold.release()
        await super().cleanup()

    async def _on_speech_started(self, frame: VADUserStartedSpeakingFrame) -> ProcessFrameResult:
        self._is_dismissed = self._is_echo = False
        if self._is_judging:  # the same speech, after a pause too short to judge it
            return ProcessFrameResult.STOP
        onset = time.monotonic() - frame.start_secs
        if self._is_bot_speaking and self._began_before_echo_was_found(onset):
            # The VAD reports speech `start_secs` late: this began in the echo, before the
            # canceller took it out.
            self._is_echo = self._is_dismissed = True
            return ProcessFrameResult.STOP
        await self._judge_or_start_turn(onset=onset)
        return ProcessFrameResult.STOP

    def _began_before_echo_was_found(self, onset: float) -> bool:
        return self._echo_found_at is not None and onset <= self._echo_found_at

    async def _on_speech_resumed_after_dismissal(self):
        # The VAD still counts this as the dismissed speech ("Wait," taken for a sound, then
        # the rest of the sentence): it is new speech, judged from now like any other.
        self._is_dismissed = self._is_echo = False
        await self._judge_or_start_turn(onset=time.monotonic())

    async def _judge_or_start_turn(self, *, onset: float):
        if not (self._is_bot_speaking and self._enable_interruptions):
            await self.trigger_user_turn_started()
            return
        self._is_judging, self._is_user_pausing = True, False
        self._hold.judging(True)
        self._onset = onset
        await self._restart_judge(self._until(self._hold_after_secs), self._held_too_long)

    async def _on_words(self, frame: TranscriptionFrame | InterimTranscriptionFrame):
        if not (self._is_judging or self._is_dismissed):
            return ProcessFrameResult.CONTINUE
        if self._is_echo:  # what the STT made of the echo ("Once upon" came as "one so")
            if isinstance(frame, TranscriptionFrame):
                await self.trigger_reset_aggregation()
            return ProcessFrameResult.STOP
        if not (self._backchannels.covers(frame.text) or self._bot_words.echoes(frame.text)):
            logger.debug("{}: interrupted by {!r}", self, frame.text)
            await self._interrupt()
            return ProcessFrameResult.STOP
        logger.debug("{}: {!r} over the bot is a {}", self, frame.text,
                     "backchannel" if self._backchannels.covers(frame.text) else "bot's echo")
        if isinstance(frame, TranscriptionFrame) or self._is_user_pausing:
            await self._dismiss()
        if isinstance(frame, TranscriptionFrame):
            await self.trigger_reset_aggregation()  # not a turn: the LLM never sees it
        return ProcessFrameResult.STOP

    async def _held_too_long(self):
        """Still speaking at `hold_after_secs`: hold the bot's audio, and interrupt at
        `max_backchannel_secs` if the speech goes on."""
        self._hold.hold()
        if not self._is_paused:
            self._is_paused = True
            await self.broadcast_frame(BotPausedFrame)
        await asyncio.sleep(self._until(self._max_backchannel_secs))
        await self._too_long()

    async def _too_long(self):
        self._judge_task = None
        logger.debug("{}: speech over the bot went on too long for a backchannel", self)
        await self._interrupt()

    async def _no_words(self):
        self._judge_task = None
        logger.debug("{}: speech over the bot had no words; the reply goes on", self)
        await self._dismiss()

    async def _interrupt(self):
        # Whatever audio of the old reply reaches the output after this is not played (a
        # piece synthesized just before the interruption arrived was heard after it).
        self._hold.drop()
        self._is_paused = False
        await self._end_judging()
        await self.trigger_user_turn_started()

    async def _dismiss(self):
        """A backchannel or a sound: the reply goes on."""
        self._is_dismissed = True
        await self._end_judging()
        self._hold.release()
        if self._is_paused:
            self._is_paused = False
            await self.broadcast_frame(BotResumedFrame)

    async def _end_judging(self):
        self._is_judging = self._is_user_pausing = False
        self._hold.judging(False)
        await self._cancel_judge()

    def _until(self, secs_from_onset: float) -> float:
        return max(0.0, self._onset + secs_from_onset - time.monotonic())

    async def _restart_judge(self, delay_secs: float, then) -> None:
        await self._cancel_judge()

        async def judge():
            await asyncio.sleep(delay_secs)
            await then()

        self._judge_task = self.task_manager.create_task(judge(), f"{self}::judge")

    async def _cancel_judge(self):
        task, self._judge_task = self._judge_task, None
        if task and task is not asyncio.current_task():
            await self.task_manager.cancel_task(task)
