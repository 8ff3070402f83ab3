"""A Realtime client's turn_detection, mapped onto our end-of-turn settings."""

import pytest

from tests.conftest import make_settings
from voxline.agent import Persona, SessionOptions
from voxline.agent.session import with_client_turn_taking
from voxline.transports.realtime_session import RealtimeSession, SessionUpdateError

VOICES = frozenset({"en_US-joe-medium", "alloy"})


def _session(**turn_detection) -> RealtimeSession:
    return RealtimeSession(id="s", model="m", voice="alloy").updated(
        {"turn_detection": turn_detection or None}, voices=VOICES, started=False)


@pytest.mark.parametrize("turn_detection, stop_secs, grace_secs", [
    ({"type": "server_vad", "silence_duration_ms": 500}, 0.5, None),
    ({"type": "server_vad", "silence_duration_ms": 20}, 0.1, None),  # clamped
    ({"type": "server_vad", "silence_duration_ms": 9000}, 3.0, None),
    ({"type": "server_vad"}, None, None),
    ({"type": "semantic_vad", "eagerness": "high"}, None, 0.75),
    ({"type": "semantic_vad", "eagerness": "low"}, None, 3.0),
    ({"type": "semantic_vad", "eagerness": "auto"}, None, None),
    ({}, None, None),  # push-to-talk
])
def test_turn_detection_becomes_the_sessions_turn_taking(turn_detection, stop_secs, grace_secs):
    session = _session(**turn_detection)
    assert (session.vad_stop_secs, session.incomplete_grace_secs) == (stop_secs, grace_secs)
    settings = make_settings()
    options = SessionOptions(session_id="s", transport="realtime", persona=Persona("p", ""),
                             vad_stop_secs=stop_secs, incomplete_grace_secs=grace_secs)
    taken = with_client_turn_taking(settings, options)
    assert taken.vad.stop_secs == (stop_secs or settings.vad.stop_secs)
    assert taken.agent.incomplete_grace_secs == (grace_secs or settings.agent.incomplete_grace_secs)


@pytest.mark.parametrize("update, param", [
    ({"turn_detection": {"type": "server_vad", "silence_duration_ms": "long"}},
     "session.turn_detection.silence_duration_ms"),
    ({"turn_detection": {"type": "semantic_vad", "eagerness": "eager"}},
     "session.turn_detection.eagerness"),
    ({"input_audio_format": "opus"}, "session.input_format"),
    ({"audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}},
     "session.audio.output_format"),
    ({"instructions": "x" * 5000}, "session.instructions"),
    ({"tools": "get_weather"}, "session.tools"),
    ({"tools": [{"type": "function", "name": "get weather!"}]}, "session.tools[0]"),
    ({"tools": [{"type": "function", "name": "f", "parameters": []}]}, "session.tools[0]"),
])
def test_bad_settings_name_their_field(update, param):
    with pytest.raises(SessionUpdateError) as raised:
        RealtimeSession(id="s", model="m", voice="alloy").updated(update, voices=VOICES,
                                                                  started=False)
    assert raised.value.param == param


def test_tools_become_function_schemas():
    tool = {"type": "function", "name": "get_weather", "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}
    session = RealtimeSession(id="s", model="m", voice="alloy").updated(
        {"tools": [tool]}, voices=VOICES, started=False)
    (schema,) = session.function_schemas()
    assert (schema.name, schema.description, schema.required) == ("get_weather", "Weather now",
                                                                  ["city"])
    assert schema.properties == {"city": {"type": "string"}}
    assert session.shape(beta=False)["tools"] == [tool]
    with pytest.raises(SessionUpdateError) as locked:
        session.updated({"tools": []}, voices=VOICES, started=True)
    assert locked.value.code == "tools_locked"
