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
    """

    def __init__(self):
        self.mode: Mode = "healthy"
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
        await request.json()
        self.requests += 1
        self.request_seen.set()
        if self.mode == "error":
            return web.json_response({"error": {"message": "model crashed"}}, status=500)
        if self.mode == "hang":
            await self._stopping.wait()
            return web.json_response({}, status=503)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in ANSWER.split(" "):
            await response.write(_sse(word + " "))
        await response.write(_sse(None, finish="stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _sse(content: str | None, finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
        "model": "fake", "choices": [{"index": 0, "delta": {"content": content} if content
                                      else {}, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()
