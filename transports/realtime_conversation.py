"""A Realtime connection's conversation as the client sees it: its items and responses, told
in server events from what the pipeline reports (the user's turns, the bot's audio, an
interruption) and from the session's bus events (transcripts, the bot's words)."""

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable

from pipecat.frames.frames import FunctionCallResultProperties
from pipecat.services.llm_service import FunctionCallParams

from voxline.bus import events
from voxline.transports.protocol import client_message
from voxline.transports.realtime_events import EventNamer, assistant_item, response, user_item
from voxline.transports.reply_end import ReplyEnd


class BadEvent(Exception):
    """A client event that cannot be taken: answered with an `error` event naming `param`."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


class _Response:
    """The bot's reply being spoken: a response with one assistant audio item. It is over when
    `/ws`'s reply is (`ReplyEnd`): the reply written, spoken and its audio stopped (the audio
    also stops for a moment when synthesis falls behind between sentences)."""

    def __init__(self, namer: EventNamer):
        self.id, self.item_id = namer.new_id("resp"), namer.new_id("item")
        self.transcript: list[str] = []
        self.output_tokens = 0
        self.end = ReplyEnd()
        self.end.see({"type": "bot.started_speaking"})


class RealtimeConversation:
    """Sends through `send` (an ordered outbox); `audio_ms` is how much of the user's audio has
    been fed; `encode` turns the bot's 24 kHz PCM into the session's output format;
    `after_response` runs after each `response.done`."""

    def __init__(self, namer: EventNamer, send: Callable[[dict], None], *,
                 audio_ms: Callable[[], int], encode: Callable[[bytes], Awaitable[bytes]],
                 after_response: Callable[[], None]):
        self._namer, self._send = namer, send
        self._audio_ms, self._encode, self._after_response = audio_ms, encode, after_response
        self._user_item: str | None = None  # the user's spoken turn in progress
        self._transcript: str | None = None  # its final transcript, if it came first
        self._partial = ""
        self._stopped_item: str | None = None  # a committed turn still waiting for its words
        self._last_item: str | None = None
        self._response: _Response | None = None
        self._written: dict | None = None  # a reply written before its response opened
        self._calls: dict[str, asyncio.Future] = {}  # function calls waiting for the client
        self._delivered = asyncio.Event()  # the last function output is in the LLM's context
        self._delivered.set()

    @property
    def is_responding(self) -> bool:
        return self._response is not None

    def emit(self, ga_type: str, **fields) -> None:
        """Send a server event (in the client's generation; dropped if it has none)."""
        if (event := self._namer.event(ga_type, **fields)) is not None:
            self._send(event)

    # Items the client adds

    def add_text(self, role: str, text: str, item_id: str | None) -> None:
        """A typed message item, added to the conversation."""
        item_id = item_id or self._namer.new_id("item")
        created = user_item(item_id, text=text) | {"role": role}
        self._add_item(item_id, created)

    def add_audio(self, *, committed: bool = False, item_id: str | None = None) -> str:
        """A user audio item (push-to-talk's committed buffer, or an item the client created);
        its id (the transcript follows)."""
        item_id = item_id or self._namer.new_id("item")
        if committed:
            self.emit("input_audio_buffer.committed", previous_item_id=self._last_item,
                      item_id=item_id)
        self.emit("conversation.item.added", previous_item_id=self._last_item,
                  item=user_item(item_id, transcript=None))
        self._last_item = item_id
        return item_id

    def function_output(self, item: dict) -> None:
        """The client ran a function the LLM called: its output is the call's result."""
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not isinstance(output, str):
            raise BadEvent("invalid_value", "a function_call_output has a call_id and an "
                           "output (text)", "item")
        waiting = self._calls.get(call_id)
        if waiting is None or waiting.done():
            raise BadEvent("unknown_call_id", f"no function call {call_id[:60]!r} is waiting "
                           "for its output", "item.call_id")
        self._delivered.clear()
        waiting.set_result(output)
        item_id = item.get("id") if isinstance(item.get("id"), str) else self._namer.new_id("item")
        self._add_item(item_id, {"id": item_id, "object": "realtime.item",
                                 "type": "function_call_output", "call_id": call_id,
                                 "output": output, "status": "completed"})

    async def function_outputs_delivered(self, timeout_secs: float) -> None:
        """Until the last function output is in the LLM's context (or `timeout_secs`)."""
        try:
            await asyncio.wait_for(self._delivered.wait(), timeout_secs)
        except TimeoutError:
            pass

    def _add_item(self, item_id: str, item: dict) -> None:
        self.emit("conversation.item.added", previous_item_id=self._last_item, item=item)
        self.emit("conversation.item.done", previous_item_id=self._last_item, item=item)
        self._last_item = item_id

    # What the pipeline says (in pipeline order)

    def user_started(self) -> None:
        self._user_item, self._transcript, self._partial = self._namer.new_id("item"), None, ""
        self.emit("input_audio_buffer.speech_started", audio_start_ms=self._audio_ms(),
                  item_id=self._user_item)

    def user_stopped(self) -> None:
        item_id = self._user_item or self._namer.new_id("item")
        self.emit("input_audio_buffer.speech_stopped", audio_end_ms=self._audio_ms(),
                  item_id=item_id)
        self.emit("input_audio_buffer.committed", previous_item_id=self._last_item,
                  item_id=item_id)
        self.emit("conversation.item.added", previous_item_id=self._last_item,
                  item=user_item(item_id, transcript=self._transcript))
        self._last_item = item_id
        self._user_item = None
        if self._transcript is not None:
            self.transcribed(item_id, self._transcript)
        else:
            self._stopped_item = item_id

    def transcribed(self, item_id: str, transcript: str) -> None:
        """A user audio item's transcript."""
        self._stopped_item = None
        self.emit("conversation.item.input_audio_transcription.completed", item_id=item_id,
                  content_index=0, transcript=transcript)
        self.emit("conversation.item.done", previous_item_id=None,
                  item=user_item(item_id, transcript=transcript))

    async def bot_audio(self, pcm: bytes) -> None:
        if self._response is None:
            self._open_response()
        reply = self._response
        audio = await self._encode(pcm)
        self.emit("response.output_audio.delta", response_id=reply.id, item_id=reply.item_id,
                  output_index=0, content_index=0, delta=base64.b64encode(audio).decode())

    def interrupted(self) -> None:
        self._written = None
        if self._response is not None:
            self._close_response("cancelled")

    async def function_call(self, params: FunctionCallParams) -> None:
        """The LLM calls a function, which the client runs: a response carrying the call goes
        out, and the client's function_call_output is the result (its response.create then
        asks for the answer)."""
        if self._response is not None:
            self._close_response("completed")
        response_id, item_id = self._namer.new_id("resp"), self._namer.new_id("item")
        arguments = json.dumps(params.arguments)
        item = {"id": item_id, "object": "realtime.item", "type": "function_call",
                "status": "completed", "name": params.function_name,
                "call_id": params.tool_call_id, "arguments": arguments}
        opening = {**item, "status": "in_progress", "arguments": ""}
        ids = {"response_id": response_id, "item_id": item_id, "output_index": 0,
               "call_id": params.tool_call_id}
        self.emit("response.created", response=response(response_id, status="in_progress",
                                                         output=[]))
        self.emit("response.output_item.added", response_id=response_id, output_index=0,
                  item=opening)
        self.emit("conversation.item.added", previous_item_id=self._last_item, item=opening)
        self._last_item = item_id
        self.emit("response.function_call_arguments.delta", **ids, delta=arguments)
        self.emit("response.function_call_arguments.done", **ids, name=params.function_name,
                  arguments=arguments)
        self.emit("response.output_item.done", response_id=response_id, output_index=0,
                  item=item)
        self.emit("conversation.item.done", previous_item_id=None, item=item)
        self.emit("response.done", response=response(response_id, status="completed",
                                                      output=[item]))
        self._after_response()
        output = self._calls[params.tool_call_id] = asyncio.get_running_loop().create_future()
        try:
            result = await output
        finally:
            self._calls.pop(params.tool_call_id, None)

        async def in_context() -> None:
            self._delivered.set()

        # pipecat writes the result into the context as JSON: output that is JSON already goes
        # in as the value it encodes, so the LLM reads the client's output as it was sent.
        with contextlib.suppress(ValueError):
            result = json.loads(result)
        await params.result_callback(result, properties=FunctionCallResultProperties(
            run_llm=False, on_context_updated=in_context))

    # What the session's bus events say

    def deliver(self, event: events.Event) -> None:
        match event:
            case events.TranscriptPartial(text=text) if self._user_item is not None:
                if text.startswith(self._partial) and len(text) > len(self._partial):
                    self.emit("conversation.item.input_audio_transcription.delta",
                              item_id=self._user_item, content_index=0,
                              delta=text[len(self._partial):])
                    self._partial = text
            case events.TranscriptFinal(text=text):
                if self._user_item is not None:
                    self._transcript = text  # said once the turn is committed
                elif (item_id := self._stopped_item) is not None:
                    self.transcribed(item_id, text)
            case events.BotSpoken(text=text) if self._response is not None:
                delta = text if not self._response.transcript else " " + text
                self._response.transcript.append(text)
                self.emit("response.output_audio_transcript.delta",
                          response_id=self._response.id, item_id=self._response.item_id,
                          output_index=0, content_index=0, delta=delta)
            case events.LLMProgress(tokens=tokens) if self._response is not None:
                self._response.output_tokens = tokens
        said = client_message(event)
        if said is None:
            return
        if self._response is None:
            if said["type"] == "bot.reply":  # a short reply is written before it plays
                self._written = said
        elif self._response.end.see(said):
            self._close_response("completed")

    # Responses

    def _open_response(self) -> None:
        reply = self._response = _Response(self._namer)
        if self._written is not None and not self._written["interrupted"]:
            reply.end.see(self._written)
        self._written = None
        self.emit("response.created", response=response(reply.id, status="in_progress",
                                                         output=[]))
        item = assistant_item(reply.item_id, transcript="", status="in_progress")
        self.emit("response.output_item.added", response_id=reply.id, output_index=0,
                  item=item)
        self.emit("conversation.item.added", previous_item_id=self._last_item, item=item)
        self._last_item = reply.item_id
        self.emit("response.content_part.added", response_id=reply.id, item_id=reply.item_id,
                  output_index=0, content_index=0,
                  part={"type": "audio", "transcript": ""})

    def _close_response(self, status: str) -> None:
        reply, self._response = self._response, None
        transcript = " ".join(reply.transcript)
        ids = {"response_id": reply.id, "item_id": reply.item_id, "output_index": 0,
               "content_index": 0}
        self.emit("response.output_audio.done", **ids)
        self.emit("response.output_audio_transcript.done", **ids, transcript=transcript)
        self.emit("response.content_part.done", **ids,
                  part={"type": "audio", "transcript": transcript})
        item_status = "completed" if status == "completed" else "incomplete"
        item = assistant_item(reply.item_id, transcript=transcript, status=item_status)
        self.emit("response.output_item.done", response_id=reply.id, output_index=0,
                  item=item)
        self.emit("conversation.item.done", previous_item_id=None, item=item)
        details = None if status == "completed" else {"type": "cancelled",
                                                      "reason": "turn_detected"}
        self.emit("response.done", response=response(
            reply.id, status=status, output=[item], status_details=details,
            output_tokens=reply.output_tokens))
        self._after_response()
