"""When the user's turn is over: as soon as the final transcript arrives, unless it reads as
unfinished — a short VAD silence window with a guard against cutting people off. Where the words
cannot tell (no punctuation, no dangling word), the voice does: smart-turn's verdict."""

import asyncio
import re
from dataclasses import dataclass

from pipecat.frames.frames import (
    Frame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_stop.base_user_turn_stop_strategy import BaseUserTurnStopStrategy

from voxline.pipeline.frames import NoWordsFrame

# After the VAD's stop, the STT's final for the speech since the last one normally comes within
# a few tenths of a second; none comes when that speech had no words (a breath, a sound after
# words already transcribed): the STT then says so (`NoWordsFrame`), or, failing that, the words
# so far end the turn after this long, not after pipecat's 5 s `user_turn_stop_timeout`.
NO_FINAL_WAIT_SECS = 1.0

# Whisper punctuates what it hears: a finished sentence ends in . ? or ! ("What is the capital
# of France?"), a trailing-off one mostly does not ("I would like to"), nor does one ending in
# a word that needs more ("and", "the").
_FINISHED = re.compile(r"[.?!…][\"')\]]*\s*$")
_TRAILING_OFF = re.compile(r"(\.\.\.|…)[\"')\]]*\s*$")
# Words a sentence does not end on. Not prepositions ("Where are you from?", "Turn it on."),
# "so" ("I think so."), "it", "that" or "is" ("I like that.").
_DANGLING = re.compile(
    r"\b(and|or|but|nor|the|a|an|to|of|because|if|than|my|your|our|their|his|its|very|"
    r"whether|although|though|until|um|uh|er|erm)\W*$", re.I)


def sounds_finished(text: str) -> bool:
    """True when a transcript reads as a complete utterance."""
    return bool(_FINISHED.search(text)) and not sounds_unfinished(text)


def sounds_unfinished(text: str) -> bool:
    """True when a transcript trails off ("My favorite color is...": Whisper's ellipsis) or
    ends on a word a sentence does not end on, punctuated or not."""
    return bool(_TRAILING_OFF.search(text) or _DANGLING.search(text.rstrip(".?!… ")))


@dataclass(frozen=True)
class VoiceVerdict:
    """What smart-turn heard, carried on a final transcript (`TranscriptionFrame.result`) whose
    words could not tell whether the user had finished."""

    is_complete: bool
    probability: float


class TranscriptTurnStopStrategy(BaseUserTurnStopStrategy):
    """Ends the turn on the final transcript of the speech the VAD closed.

    If that transcript sounds unfinished, it waits `incomplete_grace_secs` more; speech in that
    time continues the same turn. So the VAD's stop window can be short (fast replies) without
    answering people mid-sentence.
    """

    def __init__(self, *, incomplete_grace_secs: float = 0.7, **kwargs):
        super().__init__(**kwargs)
        self._grace_secs = incomplete_grace_secs
        self._text = ""
        self._voice: VoiceVerdict | None = None  # smart-turn's, on the last transcript
        self._is_vad_stopped = False
        self._grace_task: asyncio.Task | None = None
        self._no_final_task: asyncio.Task | None = None

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        """Track the VAD and the transcripts; decide when both say the user is done."""
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._is_vad_stopped = False
            await self._cancel_grace()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._is_vad_stopped = True
            if self._text and self._no_final_task is None:  # words came with the VAD on
                self._no_final_task = self.task_manager.create_task(
                    self._no_final_task_handler(), f"{self}::no_final")
        elif isinstance(frame, NoWordsFrame) and self._is_vad_stopped and self._text:
            await self._cancel_no_final()  # the speech after the words had none
            await self._decide()
        elif isinstance(frame, TranscriptionFrame) and frame.text.strip():
            self._text = f"{self._text} {frame.text}".strip()
            self._voice = frame.result if isinstance(frame.result, VoiceVerdict) else None
            if self._is_vad_stopped:
                await self._cancel_no_final()
                await self._decide()
        return ProcessFrameResult.CONTINUE

    async def handle_user_turn_started(self):
        """A new turn: forget the last one's text."""
        await self._reset()

    async def handle_user_turn_stopped(self):
        """The turn is over."""
        await self._reset()

    async def cleanup(self):
        """Stop a pending grace timer."""
        await self._cancel_grace()
        await super().cleanup()

    async def _decide(self):
        voice_finished = self._voice is not None and self._voice.is_complete
        if sounds_finished(self._text) or (voice_finished and not sounds_unfinished(self._text)):
            await self.trigger_user_turn_stopped()
        elif self._grace_task is None:
            self._grace_task = self.task_manager.create_task(
                self._grace_task_handler(), f"{self}::grace")

    async def _no_final_task_handler(self):
        await asyncio.sleep(NO_FINAL_WAIT_SECS)
        self._no_final_task = None
        await self._decide()

    async def _grace_task_handler(self):
        await asyncio.sleep(self._grace_secs)
        self._grace_task = None
        await self.trigger_user_turn_stopped()

    async def _reset(self):
        self._text, self._voice = "", None
        await self._cancel_grace()

    async def _cancel_grace(self):
        await self._cancel_no_final()
        if self._grace_task:
            await self.task_manager.cancel_task(self._grace_task)
            self._grace_task = None

    async def _cancel_no_final(self):
        if self._no_final_task:
            await self.task_manager.cancel_task(self._no_final_task)
            self._no_final_task = None
