"""What travels on Redis: an event sealed with HMAC-SHA-256 under the shared `bus.secret`.

Anyone who can reach Redis can publish; only a holder of the secret can publish what workers
and dashboards accept. An envelope too old (or from too far in the future) is refused, and so
is one seen already within that window (a replay).
"""

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable

from pydantic import ValidationError

from voxline.bus.events import EVENT_BY_TOPIC, Event

MAX_REMEMBERED = 20_000  # signatures kept against replays (a few minutes of a busy bus)


class RejectedEnvelope(ValueError):
    """Why a message from Redis was not delivered (unsigned, forged, stale, replayed,
    unreadable)."""


def seal(event: Event, *, origin: str, secret: bytes, now: float | None = None) -> str:
    """`event` as a signed envelope (JSON text)."""
    body = json.dumps({"origin": origin, "ts": time.time() if now is None else now,
                       "topic": event.topic, "event": event.model_dump(mode="json")})
    return json.dumps({"body": body, "sig": _signature(secret, body)})


class EnvelopeOpener:
    """Checks envelopes for one reader: signature, age (`max_skew_secs` either way), replay,
    then the event's schema. `clock` is injectable for tests."""

    def __init__(self, secret: bytes, *, max_skew_secs: float,
                 clock: Callable[[], float] = time.time):
        self._secret = secret
        self._max_skew = max_skew_secs
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # signature -> its envelope's ts

    def open(self, data: bytes | str) -> tuple[str, Event]:
        """The envelope's origin and event, or `RejectedEnvelope` saying why not."""
        try:
            outer = json.loads(data)
            body, signature = outer["body"], outer["sig"]
            if not isinstance(body, str) or not isinstance(signature, str):
                raise TypeError("body and sig must be strings")
            # A lone surrogate (an escape JSON allows) cannot be encoded, and compare_digest
            # refuses non-ASCII strings: neither can be an envelope we sealed.
            is_signed = hmac.compare_digest(signature, _signature(self._secret, body))
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise RejectedEnvelope(f"not a signed envelope ({type(e).__name__})") from None
        if not is_signed:
            raise RejectedEnvelope("bad signature (another bus.secret, or forged)")
        try:
            inner = json.loads(body)
            origin, ts, topic = inner["origin"], float(inner["ts"]), inner["topic"]
            event = EVENT_BY_TOPIC[topic].model_validate(inner["event"])
        except (ValueError, KeyError, TypeError, RecursionError, ValidationError) as e:
            raise RejectedEnvelope(f"signed but unreadable ({type(e).__name__})") from None
        now = self._clock()
        if abs(now - ts) > self._max_skew:
            raise RejectedEnvelope(f"stale: {now - ts:+.0f} s old (clocks out of step, or a "
                                   "replay)")
        self._forget_older_than(now - self._max_skew)
        if signature in self._seen:
            raise RejectedEnvelope("replayed")
        self._seen[signature] = ts
        if len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)
        return origin, event

    def _forget_older_than(self, oldest: float) -> None:
        while self._seen and next(iter(self._seen.values())) < oldest:
            self._seen.popitem(last=False)


def _signature(secret: bytes, body: str) -> str:
    return hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()
