"""A loopback OpenAI-compatible chat server whose health the test switches: healthy, 500, hang."""

import asyncio
import json
from typing import Literal

from aiohttp import web

Mode = Literal["healthy", "error", "hang"]
ANSWER = "The capital of France is Paris."


class FakeOpenAIServer:
    """`/v1/chat/completions` on 127.0.0.1 and a free port.

    healthy: streams `ANSWER` as SSE chunks; error: HTTP 500; hang: accepts and never answers
    (until the client gives up or the server stops). `requests` counts every completion request.

    Function calling, as OpenAI streams it: with `call_tool` set to (name, arguments) and tools
    in the request, the answer is that call (`delta.tool_calls`, arguments in pieces,
    `finish_reason: tool_calls`); once the request's last message is the tool's result, the
    answer reads it back ("The result is <content>."). `last_request` is the latest body.
    """

    def __init__(self):
        self.mode: Mode = "healthy"
        self.call_tool: tuple[str, dict] | None = None
        self.last_request: dict = {}
        self.requests = 0
        self.request_seen = asyncio.Event()
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        self.base_url = ""

    async def start(self) -> "FakeOpenAIServer":
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def stop(self) -> None:
        self._stopping.set()
        await self._runner.cleanup()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = self.last_request = await request.json()
        self.requests += 1
        self.request_seen.set()
        if self.mode == "error":
            return web.json_response({"error": {"message": "model crashed"}}, status=500)
        if self.mode == "hang":
            await self._stopping.wait()
            return web.json_response({}, status=503)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        last = body["messages"][-1]
        if self.call_tool and body.get("tools") and last.get("role") != "tool":
            await _stream_tool_call(response, *self.call_tool)
        else:
            answer = f"The result is {last['content']}." if last.get("role") == "tool" \
                else ANSWER
            for word in answer.split(" "):
                await response.write(_sse(word + " "))
            await response.write(_sse(None, finish="stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def _stream_tool_call(response: web.StreamResponse, name: str, arguments: dict) -> None:
    text = json.dumps(arguments)
    await response.write(_sse(None, delta={"role": "assistant", "tool_calls": [{
        "index": 0, "id": "call_fake1", "type": "function",
        "function": {"name": name, "arguments": ""}}]}))
    for start in range(0, len(text), 8):
        await response.write(_sse(None, delta={"tool_calls": [{
            "index": 0, "function": {"arguments": text[start:start + 8]}}]}))
    await response.write(_sse(None, finish="tool_calls"))


def _sse(content: str | None, finish: str | None = None, delta: dict | None = None) -> bytes:
    if delta is None:
        delta = {"content": content} if content else {}
    chunk = {
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
        "model": "fake", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()
