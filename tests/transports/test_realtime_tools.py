"""Function calling over the Realtime API: the tools a client declares reach the remote
OpenAI-compatible LLM (a loopback fake that streams calls as OpenAI does), the call goes back to
the client, and the client's output is what the answer is made of."""

import json

import pytest
from openai import AsyncOpenAI

from tests.conftest import RunningServer, make_settings
from tests.fake_openai import FakeOpenAIServer
from tests.transports.test_realtime import _ask, _next_of, _until

WEATHER_TOOL = {"type": "function", "name": "get_weather",
                "description": "The weather now in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}


@pytest.fixture
async def remote_llm_server(models):
    fake = await FakeOpenAIServer().start()
    settings = make_settings(llm={"provider": "openai", "base_url": fake.base_url,
                                  "remote_model": "fake", "api_key": "test-key"})
    server = await RunningServer(settings, models).start()
    try:
        yield fake, server
    finally:
        await server.stop()
        await fake.stop()


async def test_a_function_call_is_run_by_the_client_and_answered(remote_llm_server):
    fake, server = remote_llm_server
    fake.call_tool = ("get_weather", {"city": "Paris"})
    async with (AsyncOpenAI(base_url=f"{server.http_url}/v1", api_key="k",
                            max_retries=0) as client,
                client.realtime.connect(model="gpt-realtime") as connection):
        await connection.session.update(session={"type": "realtime", "tools": [WEATHER_TOOL]})
        updated = await _next_of(connection, "session.updated")
        assert updated.session.tools[0].name == "get_weather"
        called = await _ask(connection, "What is the weather in Paris?")
        arguments = next(e for e in called if e.type == "response.function_call_arguments.done")
        assert arguments.name == "get_weather"
        assert json.loads(arguments.arguments) == {"city": "Paris"}
        (item,) = called[-1].response.output
        assert item.type == "function_call" and item.call_id == arguments.call_id
        sent_tools = fake.last_request["tools"]
        assert sent_tools[0]["function"]["name"] == "get_weather"
        assert sent_tools[0]["function"]["parameters"]["required"] == ["city"]
        await connection.conversation.item.create(item={
            "type": "function_call_output", "call_id": arguments.call_id,
            "output": json.dumps({"forecast": "sunny", "celsius": 21})})
        await connection.response.create()
        answer = await _until(connection, lambda e: e.type == "response.done")
    tool_result = fake.last_request["messages"][-1]
    assert tool_result["role"] == "tool" and tool_result["tool_call_id"] == arguments.call_id
    assert json.loads(tool_result["content"]) == {"forecast": "sunny", "celsius": 21}
    assert answer[-1].response.status == "completed"
    transcript = next(e for e in answer if e.type == "response.output_audio_transcript.done")
    assert "sunny" in transcript.transcript.lower()


async def test_an_output_for_no_call_is_an_error(remote_llm_server):
    _, server = remote_llm_server
    async with (AsyncOpenAI(base_url=f"{server.http_url}/v1", api_key="k",
                            max_retries=0) as client,
                client.realtime.connect(model="gpt-realtime") as connection):
        await connection.conversation.item.create(item={
            "type": "function_call_output", "call_id": "call_nobody", "output": "{}"})
        error = await _next_of(connection, "error")
    assert error.error.code == "unknown_call_id" and error.error.param == "item.call_id"
