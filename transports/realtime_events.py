"""The OpenAI Realtime API's server events, as the connection sends them: generally-available
(GA) names by default, the beta names for a client that asked for the beta
(`OpenAI-Beta: realtime=v1`)."""

import itertools
import uuid

# GA name → the beta's, where they differ.
BETA_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "conversation.item.added": "conversation.item.created",
}
GA_ONLY = frozenset({"conversation.item.done"})  # the beta has no such event
MAX_ERROR_MESSAGE = 500


class EventNamer:
    """Ids and names of one connection's server events."""

    def __init__(self, *, beta: bool):
        self.beta = beta
        self._count = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]

    def new_id(self, kind: str) -> str:
        """A fresh id: `event_…`, `item_…`, `resp_…`."""
        return f"{kind}_{self._prefix}{next(self._count):06d}"

    def event(self, ga_type: str, **fields) -> dict | None:
        """The event in this client's generation (None: it has no such event)."""
        if self.beta and ga_type in GA_ONLY:
            return None
        kind = BETA_NAMES.get(ga_type, ga_type) if self.beta else ga_type
        return {"type": kind, "event_id": self.new_id("event"), **fields}

    def error(self, code: str, message: str, *, kind: str = "invalid_request_error",
              event_id: str | None = None, param: str | None = None) -> dict:
        """The API's `error` event: the session goes on."""
        return {"type": "error", "event_id": self.new_id("event"),
                "error": {"type": kind, "code": code, "message": message[:MAX_ERROR_MESSAGE],
                          "param": param, "event_id": event_id}}


def user_item(item_id: str, *, text: str | None = None, transcript: str | None = None,
              status: str = "completed") -> dict:
    """A user message item: typed text, or audio (with its transcript once known)."""
    content = ({"type": "input_text", "text": text} if text is not None
               else {"type": "input_audio", "transcript": transcript})
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
            "status": status, "content": [content]}


def assistant_item(item_id: str, *, transcript: str, status: str) -> dict:
    """The bot's spoken reply as an item."""
    content = [{"type": "output_audio", "transcript": transcript}] if status != "in_progress" \
        else []
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
            "status": status, "content": content}


def response(response_id: str, *, status: str, output: list[dict],
             status_details: dict | None = None, output_tokens: int = 0) -> dict:
    """A response object, as `response.created` and `response.done` carry it."""
    return {"id": response_id, "object": "realtime.response", "status": status,
            "status_details": status_details, "output": output,
            "output_modalities": ["audio"],
            "usage": {"total_tokens": output_tokens, "input_tokens": 0,
                      "output_tokens": output_tokens,
                      "input_token_details": {"text_tokens": 0, "audio_tokens": 0,
                                              "cached_tokens": 0},
                      "output_token_details": {"text_tokens": output_tokens,
                                               "audio_tokens": 0}}}
