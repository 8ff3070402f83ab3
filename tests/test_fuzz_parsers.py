"""Property-based fuzzing (Hypothesis) of every parser a client or Redis can reach: whatever
arrives, each answers with its own clear refusal (a ProtocolError, a SignallingError, a
RejectedEnvelope, an error reply) or a valid result, and never raises anything else."""

import asyncio
import hashlib
import hmac
import json
import string
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipecat.frames.frames import Frame

from voxline.bus.envelope import EnvelopeOpener, RejectedEnvelope, seal
from voxline.bus.events import EVENT_BY_TOPIC, TranscriptFinal
from voxline.bus.inprocess import InProcessBus
from voxline.dashboard.app import Operator, _command, _json_or_none
from voxline.transports.protocol import ProtocolError, StartMessage, parse_start, parse_text
from voxline.transports.serializer import AudioBudget, PCMSerializer
from voxline.transports.webrtc import (
    OfferBody,
    PatchBody,
    SignallingError,
    _check_has_audio,
    _parse,
)

SECRET = b"fuzzing-secret-fuzzing-secret!!!"
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner,
                                                                max_size=5),
    max_leaves=20,
)
# Start-like messages: the right keys, values of any type, often almost right.
start_like = st.fixed_dictionaries({"type": st.sampled_from(["start", "Start", "stop", 7])},
                                   optional={
    "sample_rate": st.one_of(st.sampled_from([16000, 48000, 44100, 0, -1, 16000.0, "16000",
                                              True]), st.integers()),
    "output_sample_rate": st.one_of(st.none(), st.integers(), st.text(max_size=5)),
    "system_prompt": st.one_of(st.none(), st.text(max_size=50), st.integers()),
    "greeting": st.one_of(st.none(), st.text(max_size=50)),
    "record": st.one_of(st.booleans(), st.integers(0, 1), st.text(max_size=3)),
    "echo_cancellation": st.one_of(st.none(), st.booleans(), st.text(max_size=3)),
    "extra": json_values,
})


@FUZZ
@given(st.one_of(st.text(), st.builds(json.dumps, json_values), st.builds(json.dumps, start_like)))
def test_any_text_message_is_a_dict_or_a_protocol_error(raw):
    try:
        message = parse_text(raw, max_bytes=8192)
    except ProtocolError as e:
        assert e.code in {"bad_json", "bad_message", "message_too_large"} and e.message
        return
    assert isinstance(message, dict) and isinstance(message["type"], str)


@FUZZ
@given(st.one_of(start_like, st.dictionaries(st.text(max_size=20), json_values, max_size=6)))
def test_any_start_is_valid_or_refused_with_a_named_field(message):
    try:
        start = parse_start(message)
    except ProtocolError as e:
        assert e.code in {"bad_start", "bad_sample_rate"} and e.message.startswith("start message")
        return
    assert isinstance(start, StartMessage) and start.out_rate > 0


@FUZZ
@given(st.one_of(st.binary(max_size=4096), st.text(max_size=300),
                 st.builds(json.dumps, json_values)))
def test_the_serializer_turns_any_message_into_a_frame_or_an_error(data):
    errors: list[tuple[str, str]] = []

    async def give_up(code: str, message: str) -> None:
        errors.append((code, message))

    async def deserialize():
        serializer = PCMSerializer(client_sample_rate=16000, max_frame_bytes=1024,
                                   max_text_bytes=256, report_error=lambda *e: errors.append(e),
                                   audio_budget=AudioBudget(rate=2.0, burst_secs=5.0),
                                   give_up=give_up)
        return await serializer.deserialize(data)

    frame = asyncio.run(deserialize())
    assert frame is None or isinstance(frame, Frame)
    assert (frame is None) == bool(errors), (frame, errors)


@FUZZ
@given(st.one_of(json_values, st.fixed_dictionaries({
    "sdp": st.one_of(st.text(max_size=200), st.just("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")),
    "type": st.sampled_from(["offer", "answer", "x"]),
}, optional={"pc_id": st.one_of(st.none(), st.text(max_size=120), st.integers()),
             "restart_pc": json_values})))
def test_any_offer_body_is_parsed_or_refused_with_a_signalling_error(body):
    try:
        offer = _parse(OfferBody, body)
        _check_has_audio(offer.sdp)
    except SignallingError as e:
        assert e.status == 400 and e.code in {"bad_request", "bad_sdp"} and e.message


@FUZZ
@given(json_values)
def test_any_candidates_body_is_parsed_or_refused(body):
    try:
        _parse(PatchBody, body)
    except SignallingError as e:
        assert (e.status, e.code) == (400, "bad_request")


@FUZZ
@given(st.one_of(st.binary(max_size=500), st.text(max_size=500),
                 st.builds(json.dumps, json_values),
                 st.builds(lambda body, sig: json.dumps({"body": body, "sig": sig}),
                           st.one_of(st.text(max_size=100), st.builds(json.dumps, json_values)),
                           st.text(string.hexdigits, max_size=64))))
def test_any_message_from_redis_is_an_event_or_rejected(data):
    try:
        EnvelopeOpener(SECRET, max_skew_secs=30).open(data)
    except RejectedEnvelope as e:
        assert str(e)
    else:
        raise AssertionError(f"an unsigned message was accepted: {data!r}")


events = st.builds(TranscriptFinal, session_id=st.from_regex(r"[a-z0-9]{0,12}", fullmatch=True),
                   text=st.text(max_size=200))


@FUZZ
@given(events, st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_a_sealed_event_opens_once_and_any_changed_byte_is_rejected(event, where, flip):
    sealed = seal(event, origin="w1", secret=SECRET).encode()
    origin, opened = EnvelopeOpener(SECRET, max_skew_secs=30).open(sealed)
    assert (origin, opened) == ("w1", event)
    tampered = bytearray(sealed)
    tampered[where % len(tampered)] ^= flip
    try:
        EnvelopeOpener(SECRET, max_skew_secs=30).open(bytes(tampered))
    except RejectedEnvelope:
        return
    # A change JSON cannot see (say, an escape written another way) may still verify: then
    # it must be the very same event.
    assert EnvelopeOpener(SECRET, max_skew_secs=30).open(bytes(tampered))[1] == event


@FUZZ
@given(st.sampled_from(sorted(EVENT_BY_TOPIC)), st.one_of(
    json_values, st.dictionaries(st.sampled_from(["session_id", "source", "text", "level",
                                                  "message", "turn", "target", "command_id",
                                                  "action", "ts", "v", "transport"]),
                                 json_values, max_size=6)))
def test_a_signed_event_of_any_topic_with_any_fields_is_validated(topic, fields):
    """Past the signature (a holder of the secret with a bug, or an older version), each
    topic's schema still decides: a valid event, or a rejection, never an exception."""
    body = json.dumps({"origin": "w2", "ts": time.time(), "topic": topic, "event": fields})
    data = json.dumps({"body": body, "sig": hmac.new(SECRET, body.encode(),
                                                     hashlib.sha256).hexdigest()})
    try:
        _, event = EnvelopeOpener(SECRET, max_skew_secs=30).open(data)
    except RejectedEnvelope:
        return
    assert isinstance(event, EVENT_BY_TOPIC[topic])


@FUZZ
@given(st.one_of(st.text(max_size=300), st.builds(json.dumps, json_values),
                 st.builds(json.dumps, st.fixed_dictionaries({"type": st.just("control")},
                                                             optional={
                     "worker": st.one_of(st.text(max_size=30), st.integers()),
                     "action": st.one_of(st.sampled_from(["end_session", "set_persona",
                                                          "reload_model"]), st.text(max_size=10)),
                     "session_id": json_values, "model_kind": json_values,
                     "system_prompt": json_values}))))
def test_any_dashboard_message_gets_a_reply_never_an_exception(raw):
    reply = _command(_json_or_none(raw), InProcessBus(), "dashboard", Operator("local", "::1"))
    assert reply["type"] in {"sent", "error"}
    assert reply["type"] == "sent" or reply["message"]


@pytest.mark.parametrize("envelope", [
    '{"body": "\\ud800 lone surrogate", "sig": "00"}',
    '{"body": "{}", "sig": "\\u00e9t\\u00e9"}',
], ids=["lone surrogate in the body", "non-ASCII signature"])
def test_an_envelope_no_one_could_have_sealed_is_rejected(envelope):
    """Regression (found by the fuzz test above): these raised UnicodeEncodeError and
    TypeError out of `open` instead of being rejected."""
    with pytest.raises(RejectedEnvelope, match="not a signed envelope"):
        EnvelopeOpener(SECRET, max_skew_secs=30).open(envelope)
