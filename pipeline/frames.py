"""voxline's own frames (pipecat's are in `pipecat.frames.frames`)."""

from dataclasses import dataclass

from pipecat.frames.frames import SystemFrame


@dataclass
class EchoGuardedFrame(SystemFrame):
    """The LLM kept back a reply's opening that said the user's words back (`text`): on the
    first try (`attempt` 1) it writes the reply again, on the second it speaks a fallback.
    Observers publish it (`llm.echo.guarded`) and count it (`/metrics`)."""

    text: str
    attempt: int


@dataclass
class BotPausedFrame(SystemFrame):
    """The bot's audio is held while speech over it is judged (pipeline/barge_in.py). A
    `BotResumedFrame` follows when it was a backchannel; an interruption otherwise."""


@dataclass
class BotResumedFrame(SystemFrame):
    """The speech over the bot was a backchannel or no words: its audio plays on."""


@dataclass
class NoWordsFrame(SystemFrame):
    """The STT decoded the user's speech (at a pause, or after the VAD's stop) and found no
    words: no transcript will come for it. Lets the judge of speech over the bot resume it, and
    the end of the turn go on, without waiting for words that never come."""


@dataclass
class EchoFoundFrame(SystemFrame):
    """The client's microphone was just found to hear its loudspeaker, and the echo canceller
    starts its work. Speech the VAD heard over the bot before this was most likely that echo:
    the judge of speech over the bot resumes it and keeps its words out of the conversation."""
