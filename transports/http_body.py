"""Request bodies read with a bound, whatever Content-Length claims."""

from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body is over the bound; nothing past it was read."""

    def __init__(self, max_bytes: int):
        super().__init__(f"the request body is over {max_bytes} bytes")
        self.max_bytes = max_bytes


# A body over the bound is read on (and dropped) up to this multiple of it before the refusal,
# so that a client still sending reads the answer rather than a reset connection.
DRAINED_MULTIPLE = 2


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, or `BodyTooLarge` once it passes `max_bytes` (nothing past the bound is
    kept, and nothing past twice the bound is read)."""
    body, size = bytearray(), 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAINED_MULTIPLE * max_bytes:
            break
        if size <= max_bytes:
            body += chunk
    if size > max_bytes:
        raise BodyTooLarge(max_bytes)
    return bytes(body)


def replayed(request: Request, body: bytes) -> Request:
    """A request like `request` whose body is `body`, already read (for a parser that reads
    the body itself, such as Starlette's form parser)."""
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)
