"""In-process llama.cpp LLM: streams tokens from a worker thread into the pipeline."""

import asyncio
import threading
import time
import uuid
from collections import deque

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterimTranscriptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings

from voxline.models.llama import LlamaEngine
from voxline.models.prompt import Examples, with_examples
from voxline.pipeline.frames import EchoGuardedFrame
from voxline.pipeline.reply_writer import EchoCaught, ReplyStyle, write_reply

_DONE = object()
# A little faster than Piper's voice speaks the bench's replies (pauses included): counting
# faster errs toward writing ahead, never toward making playback wait.
SPEECH_CHARS_PER_SEC = 20.0
SENTENCE_ENDS = ".!?"
WRITTEN_REPLIES_KEPT = 8  # a context window's worth of the replies' raw text


class PlaybackPace:
    """How far the current reply's text runs ahead of its playback, in seconds of speech.

    Written on the event loop and the LLM's caller thread, read by its scheduler thread (the
    `Pace` of models/llama_request.py): plain attribute reads, no lock needed. Playback is
    counted from the reply's first audio, or from `NO_AUDIO_GRACE_SECS` after the reply began
    if no audio has started by then (audio still playing from before, speech that failed): a
    pause must never turn into a stall. Only text the TTS has been given counts: whole
    sentences, each once the next word has begun (pipecat's aggregator holds "... the ocean."
    until it sees the next word, in case of "Dr." or "3.5"), and lines at their line break;
    a half-written sentence is no lead at all. And when the bot's
    audio runs out mid-reply, playback has caught up with everything, whatever the estimate
    said (text the TTS holds back, a voice faster than `SPEECH_CHARS_PER_SEC`): the lead
    starts again from nothing. Every error of the estimate errs toward writing more, never
    toward silence.
    """

    NO_AUDIO_GRACE_SECS = 3.0
    SHORT_LEAD_SECS = 2.0  # ~a clause plus the time to synthesize the next one

    def __init__(self, lead_secs: float):
        self._lead_secs = lead_secs
        self._chars = 0  # given to the TTS since `_played_from`
        self._held = ""  # written after that: the sentence still being written
        self._played_from = 0.0  # when playback was at the start of those `_chars`

    def start_reply(self) -> None:
        self._chars, self._held = 0, ""
        self._played_from = time.monotonic() + self.NO_AUDIO_GRACE_SECS

    def wrote(self, text: str) -> None:
        held = self._held + text
        last_char = max(len(held.rstrip()) - 1, 0)  # a sentence end before it has a word after it
        end = max(held.rfind("\n"), *(held.rfind(c, 0, last_char) for c in SENTENCE_ENDS))
        self._chars += end + 1
        self._held = held[end + 1:]

    def playback_started(self) -> None:
        self._played_from = min(self._played_from, time.monotonic())

    def playback_ran_out(self) -> None:
        """The bot stopped speaking: all it was given has been played."""
        self._chars, self._played_from = 0, time.monotonic()

    def is_ahead(self) -> bool:
        """True when the text written is more than `lead_secs` of speech ahead of playback."""
        return self._lead() > self._lead_secs

    def is_running_short(self) -> bool:
        """True when playback will reach the end of the text written within
        `SHORT_LEAD_SECS`: the next words are as urgent as the first."""
        return self._lead() < self.SHORT_LEAD_SECS

    def _lead(self) -> float:
        played = max(0.0, time.monotonic() - self._played_from)
        return self._chars / SPEECH_CHARS_PER_SEC - played


class LlamaCppLLMService(LLMService):
    """Answers each `LLMContextFrame` with a shared `LlamaEngine`, in the reply `style`
    (`pipeline/reply_writer.py`), with the persona's `examples` ahead of the conversation.

    Tokens cross from the engine's thread to the loop through a queue. An interruption cancels
    the frame task (pipecat's standard behaviour); the `finally` then sets the thread's stop
    event, so generation ends within one token and nothing more is pushed. Every reply of this
    service uses one session key, so the engine keeps this conversation's KV cache between turns.
    With `playback_lead_secs` > 0 a reply is written at most that far ahead of its playback.
    """

    def __init__(
        self, *, engine: LlamaEngine, system_instruction: str, style: ReplyStyle,
        examples: Examples = (), playback_lead_secs: float = 0.0, **kwargs,
    ):
        super().__init__(
            settings=LLMSettings(
                model=engine.name, system_instruction=system_instruction,
                temperature=style.temperature, max_tokens=style.max_tokens,
                # Not offered by this service; None says so to pipecat's settings checks.
                top_p=None, top_k=None, frequency_penalty=None, presence_penalty=None, seed=None,
                filter_incomplete_user_turns=False, user_turn_completion_config=None,
            ),
            **kwargs,
        )
        self._engine = engine
        self._style = style
        self._examples = examples
        self._session_key = uuid.uuid4().hex
        self._pace = PlaybackPace(playback_lead_secs) if playback_lead_secs > 0 else None
        self._written: deque[str] = deque(maxlen=WRITTEN_REPLIES_KEPT)  # replies as generated

    def can_generate_metrics(self) -> bool:
        """Report TTFB like pipecat's own LLM services."""
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Generate a reply for a context; pass every other frame on."""
        await super().process_frame(frame, direction)
        if self._pace:  # system frames: seen even while a reply is being generated
            if isinstance(frame, BotStartedSpeakingFrame):
                self._pace.playback_started()
            elif isinstance(frame, BotStoppedSpeakingFrame):
                self._pace.playback_ran_out()
        if isinstance(frame, LLMContextFrame):
            await self.push_frame(LLMFullResponseStartFrame())
            # Not on an interruption (a cancellation): the end of a reply makes the TTS speak
            # the text it holds, and a stray syllable of the cut reply was heard after it.
            await self._generate(frame.context)
            await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)

    async def prefill(self, context: LLMContext, user_words: str) -> None:
        """Read the user's words so far into this conversation's KV cache, in the background
        (`LlamaEngine.prefill`): the reply then evaluates only what they add."""
        messages = await self._messages(context)
        self._engine.prefill([*messages, {"role": "user", "content": user_words}],
                             session_key=self._session_key)

    async def _messages(self, context: LLMContext) -> list[dict]:
        """The context's messages, with this service's own replies as it wrote them.

        The context holds a reply as it was spoken: the TTS pieces joined by spaces, so a list's
        line breaks are gone. Given that, the prompt no longer matched the KV cache from the
        first line break on, and the next turn evaluated the rest of the reply again, delaying
        its first token (docs/performance.md#single-session); the model also saw its lists
        flattened."""
        params = await self.get_llm_adapter().get_llm_invocation_params(
            context,
            system_instruction=self._settings.system_instruction,
            convert_developer_to_user=True,
        )
        messages = with_examples([dict(m) for m in params["messages"]], self._examples)
        for message in messages:
            if message.get("role") == "assistant" and isinstance(message.get("content"), str):
                message["content"] = next(
                    (text for written in reversed(self._written)
                     if (text := as_written(message["content"], written))),
                    message["content"])
        return messages

    async def _generate(self, context: LLMContext):
        messages = await self._messages(context)
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        written: list[str] = []
        pace = self._pace
        if pace:
            pace.start_reply()

        def produce():
            try:
                for piece in write_reply(self._engine, messages, style=self._style, stop=stop,
                                         session_key=self._session_key, pace=pace):
                    if pace and isinstance(piece, str):
                        pace.wrote(piece)
                    loop.call_soon_threadsafe(pieces.put_nowait, piece)
            except Exception as e:  # reported on the loop, below
                loop.call_soon_threadsafe(pieces.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(pieces.put_nowait, _DONE)

        await self.start_processing_metrics()
        await self.start_ttfb_metrics()
        loop.run_in_executor(self._engine.executor, produce)
        try:
            while (piece := await pieces.get()) is not _DONE:
                if isinstance(piece, Exception):
                    await self.push_error(f"{self}: generation failed: {piece}", exception=piece)
                    break
                if isinstance(piece, EchoCaught):
                    # Not the words: they are the user's, and logs outlive the session.
                    logger.info("{}: echo guard kept back a reply's opening (try {})", self,
                                piece.attempt)
                    await self.push_frame(EchoGuardedFrame(text=piece.text,
                                                           attempt=piece.attempt))
                    continue
                await self.stop_ttfb_metrics()
                written.append(piece)
                await self._push_llm_text(piece)
        except asyncio.CancelledError:
            logger.debug("{}: reply cancelled; worker thread told to stop", self)
            raise
        finally:
            stop.set()
            if written:
                self._written.append("".join(written))
            await self.stop_processing_metrics()


def as_written(spoken: str, written: str) -> str | None:
    """`written` (a reply as the LLM wrote it) as far as `spoken` (that reply as the context
    has it: pieces joined by single spaces, or only its start if it was interrupted) goes;
    None if `spoken` is not that reply. Only whitespace may differ; the written form keeps
    the whitespace the model wrote around the text, as its KV cache has it."""
    i, j = 0, len(written) - len(written.lstrip())
    while i < len(spoken):
        if spoken[i].isspace():
            while i < len(spoken) and spoken[i].isspace():
                i += 1
            while j < len(written) and written[j].isspace():
                j += 1
        elif j < len(written) and spoken[i] == written[j]:
            i, j = i + 1, j + 1
        else:
            return None
    if not written[:j].strip():
        return None
    return written if not written[j:].strip() else written[:j].rstrip()


class InterimPrefillProcessor(FrameProcessor):
    """Between the STT and the user aggregator (which consumes interim transcripts): hands each
    interim to the local LLM, so it reads the user's words while they are still speaking."""

    def __init__(self, *, llm: LlamaCppLLMService, context: LLMContext, **kwargs):
        super().__init__(**kwargs)
        self._llm = llm
        self._context = context

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Prefill on an interim transcript; pass every frame on."""
        await super().process_frame(frame, direction)
        if isinstance(frame, InterimTranscriptionFrame) and frame.text.strip():
            await self._llm.prefill(self._context, frame.text.strip())
        await self.push_frame(frame, direction)


def interim_prefill(llm: LLMService, context: LLMContext) -> list[FrameProcessor]:
    """The prefill processor for the in-process LLM; nothing for a remote one."""
    if not isinstance(llm, LlamaCppLLMService):
        return []
    return [InterimPrefillProcessor(llm=llm, context=context)]
