"""Shared fixtures: real models (loaded once), a real server on 127.0.0.1, spoken test audio."""

import asyncio
import gc
import shutil
import subprocess
import warnings
import wave
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from loguru import logger

from voxline.config import load_settings
from voxline.models import load_models
from voxline.server import VoxlineServer, uvicorn_config
from voxline.transports.app import create_app
from voxline.worker import Worker

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
SESSION_END_SECS = 10.0  # a session whose client left ends well within this
TASK_END_SECS = 0.5  # tasks that were already ending (not waiting on anything) finish in this

# Unclosed sockets, files and transports, as the interpreter reports them. The garbage collector
# reports one in whichever test happens to run when it collects, not in the one that left it, so
# they fail the run as a whole, each listed with the test it surfaced in.
resource_warnings: list[str] = []


def pytest_warning_recorded(warning_message, when, nodeid, location):
    if issubclass(warning_message.category, ResourceWarning):
        resource_warnings.append(f"{nodeid or when}: {warning_message.message}")


def pytest_sessionfinish(session, exitstatus):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    resource_warnings.extend(f"(collected at the end): {w.message}" for w in caught
                             if issubclass(w.category, ResourceWarning))
    if resource_warnings and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if resource_warnings:
        terminalreporter.section("resources left open (ResourceWarning)", red=True)
        for line in resource_warnings:
            terminalreporter.line(line)


def make_settings(**overrides):
    """Settings for tests: SmolLM2 (fast), loopback, a free port; sections merged with overrides."""
    base = {
        "server": {"host": "127.0.0.1", "port": 0},
        "llm": {"model": "smollm2-135m", "max_tokens": 60, "temperature": 0.0},
    }
    for section, fields in overrides.items():
        base.setdefault(section, {}).update(fields)
    return load_settings(None, **base)


@pytest.fixture(scope="session")
def settings():
    return make_settings()


@pytest.fixture(scope="session")
def models(settings):
    """Every model, loaded once for the whole run, as `voxline serve` does."""
    loaded = load_models(settings, lambda line, secs: logger.info("{} {:.2f}s", line, secs))
    yield loaded
    loaded.close()


class RunningServer:
    """A real uvicorn server of our app, in the test's event loop."""

    started: set["RunningServer"] = set()  # not yet stopped: their sessions are checked

    def __init__(self, settings, models):
        self.worker = Worker(settings, models)
        self.host = self.worker.host
        self._server = VoxlineServer(uvicorn_config(create_app(self.worker), settings),
                                     on_shutdown=self.worker.end_sessions)
        self._task: asyncio.Task | None = None
        self._running = AsyncExitStack()

    async def start(self) -> "RunningServer":
        await self._running.enter_async_context(self.worker)
        self._task = asyncio.create_task(self._server.serve(), name="test-uvicorn")
        ready = asyncio.create_task(self._server.ready.wait())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():  # serve() ended first: it failed to start
            ready.cancel()
            self._task.result()
            raise RuntimeError("test server did not start")
        self.port = self._server.port
        RunningServer.started.add(self)
        return self

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        RunningServer.started.discard(self)
        self._server.should_exit = True
        if self._task:
            await self._task
        await self._running.aclose()


@pytest.fixture(scope="session")
async def server(settings, models):
    """One server for the whole run (sessions are independent; each test opens its own)."""
    running = await RunningServer(settings, models).start()
    yield running
    await running.stop()


@pytest.fixture(autouse=True)
async def fail_on_leaked_tasks(request):
    """Every task a test starts must be gone when it ends. Sessions end after their client
    has left: the check waits for every running server's host to be idle, then for the tasks
    that were ending (a closing connection's handler) to finish, and no longer."""
    before = set(asyncio.all_tasks())
    yield
    try:
        async with asyncio.timeout(SESSION_END_SECS):
            for running in list(RunningServer.started):
                await running.host.wait_idle()
    except TimeoutError:
        pytest.fail(f"sessions still running {SESSION_END_SECS:g}s after "
                    f"{request.node.name} ended")
    ending = [t for t in asyncio.all_tasks() - before if not t.done()
              and t is not asyncio.current_task()]
    _, leaked = await asyncio.wait(ending, timeout=TASK_END_SECS) if ending else (set(), set())
    if leaked:
        names = "\n".join(f"  {t.get_name()}: {t.get_coro()}" for t in leaked)
        pytest.fail(f"{len(leaked)} task(s) leaked by {request.node.name}:\n{names}")


def _espeak_wav(text: str, path: Path) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-s", "165", "-w", str(raw), text], check=True)
    # espeak-ng writes 22050 Hz; convert to 16 kHz mono 16-bit with soxr (no sox binary needed).
    import numpy as np
    import soxr

    with wave.open(str(raw), "rb") as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768
    resampled = soxr.resample(samples, rate, 16000)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.clip(resampled, -1, 1) * 32767).astype(np.int16).tobytes())
    raw.unlink()
    return path


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """`speech("text")` → path of a 16 kHz mono wav of espeak-ng saying it (cached per text)."""
    folder = tmp_path_factory.mktemp("speech")
    cache: dict[str, Path] = {}

    def make(text: str) -> Path:
        if text not in cache:
            cache[text] = _espeak_wav(text, folder / f"utt{len(cache)}.wav")
        return cache[text]

    return make


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
