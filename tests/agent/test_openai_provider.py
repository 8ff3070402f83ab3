"""`llm.provider: openai` talks to a real OpenAI-compatible server (llama-cpp-python's) on
127.0.0.1, as users run vLLM, llama-server or Ollama."""

import asyncio
import socket
import sys
import urllib.request

import pytest

from tests.conftest import RunningServer, make_settings
from tests.helpers import cer, transcribe, wer
from voxline.models import catalog
from voxline.models.registry import ModelRegistry
from voxline.talk import talk


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
async def openai_server(settings):
    port = _free_port()
    gguf = ModelRegistry(settings.models.cache_dir).path_of(catalog.SMOLLM2_135M)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias",
        "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
        "--n_threads", "2", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(300):  # readiness: the models endpoint answers
            if await asyncio.to_thread(_answers, f"{base}/models"):
                break
            if process.returncode is not None:
                pytest.fail("llama_cpp.server exited at start-up")
            await asyncio.sleep(0.1)
        yield base
    finally:
        process.terminate()
        await process.wait()


async def test_a_spoken_question_is_answered_by_the_remote_llm(openai_server, models, speech,
                                                               tmp_path):
    settings = make_settings(llm={"provider": "openai", "base_url": openai_server,
                                  "remote_model": "smollm2", "api_key": "test-key"})
    server = await RunningServer(settings, models).start()
    try:
        result = await talk(url=server.ws_url, wav=speech("What is the capital of France?"),
                            out=None, timeout_secs=60, printer=lambda line: None)
    finally:
        await server.stop()
    assert wer("What is the capital of France?", result.texts("transcript.final")[-1]) <= 0.2
    spoken = " ".join(result.texts("bot.text"))
    assert spoken, result.events
    heard = transcribe(models, bytes(result.reply_pcm), result.sample_rate)
    assert cer(spoken, heard) < 0.3, (spoken, heard)  # characters: Piper varies by run


async def test_the_echo_guard_and_examples_work_with_a_remote_llm(openai_server, models, speech):
    """The persona that says everything back (its examples sent with every request), served
    by the remote server: what it says back is never heard, and it is counted."""
    from tests.agent.test_echo_guard import PARROT_AGENT, STATEMENT, _talk_to_a_parrot
    from voxline.bus import events
    from voxline.pipeline.echo import echoed_sentences

    settings = make_settings(llm={"provider": "openai", "base_url": openai_server,
                                  "remote_model": "smollm2", "api_key": "test-key"},
                             agent=PARROT_AGENT)
    result, got, metrics = await _talk_to_a_parrot(settings, models, speech)
    heard = result.texts("transcript.final")[-1]
    assert wer(STATEMENT, heard) <= 0.2
    spoken = " ".join(result.texts("bot.text"))
    assert spoken and not echoed_sentences(spoken, heard), (heard, spoken)
    guarded = [e for e in got if isinstance(e, events.EchoGuarded)]
    assert guarded and guarded[0].attempt == 1, got
    assert 'voxline_llm_echo_guard_total{outcome="written_again"} 1.0' in metrics
