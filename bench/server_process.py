"""Start a server for the benchmark in its own process, wait until ready, watch its CPU/RSS."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

READY_TIMEOUT_SECS = 600  # a first run may join split models


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


async def is_listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


def _open_log(path: Path | None):
    """A server's log file, appended to (None: no log). The caller closes it once the child
    has its own copy of the descriptor."""
    return open(path, "ab") if path else None  # noqa: SIM115 (closed by the caller)


@dataclass
class ServerProcess:
    """A child process serving our WebSocket protocol on `port`."""

    name: str
    args: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    # Its own process group, which stop() ends whole; False for a helper of a server that has
    # one (it then ends with that server's group).
    own_process_group: bool = True
    # Where its stdout and stderr go (`voxline bench --server-logs`); None discards them.
    log_path: Path | None = None
    process: asyncio.subprocess.Process | None = None

    @property
    def ws_url(self) -> str:
        """Where clients connect."""
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self, ready_path: str | None = "/ready") -> None:
        """Spawn and wait for `ready_path` to answer JSON (None: for the port to accept
        connections), or fail with the child's exit."""
        log = _open_log(self.log_path)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.args, env={**os.environ, **self.env},
                stdout=log or asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.STDOUT,
                start_new_session=self.own_process_group,
            )
        finally:
            if log:
                log.close()  # the child holds its own copy
        deadline = time.monotonic() + READY_TIMEOUT_SECS
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(f"{self.name} server exited with {self.process.returncode}")
            if ready_path is None and await is_listening(self.port):
                return
            if ready_path is not None and await asyncio.to_thread(
                    _get_json, f"http://127.0.0.1:{self.port}{ready_path}"):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} server not ready after {READY_TIMEOUT_SECS}s")

    async def stop(self) -> None:
        """Terminate its whole process group (kill after 5 s). The baseline server's own
        llama-cpp server outlived a killed parent before (two left running after a bench)."""
        if self.process and self.process.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self._signal_group(signal.SIGKILL)
                await self.process.wait()
        if self.process and self.own_process_group:
            self._signal_group(signal.SIGKILL)  # children still left in the group

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.own_process_group:
                os.killpg(self.process.pid, sig)
            elif self.process.returncode is None:
                self.process.send_signal(sig)

    def ready_info(self) -> dict:
        """The server's `/ready` answer (sessions, tasks, models)."""
        return _get_json(f"http://127.0.0.1:{self.port}/ready") or {}


def voxline_server(port: int, env: dict[str, str], *, log_path: Path | None = None,
                   log_level: str = "WARNING") -> ServerProcess:
    """`voxline serve` on `port` with the given settings (as env vars)."""
    args = [sys.executable, "-m", "voxline", "--log-level", log_level, "serve", "--port",
            str(port)]
    return ServerProcess("voxline", args, port, env, log_path=log_path)


class ResourceSampler:
    """Samples a process tree's CPU % and RSS every `period_secs` while running."""

    def __init__(self, pid: int, period_secs: float = 0.5):
        self._process = psutil.Process(pid)
        self._period = period_secs
        self.samples: list[tuple[float, float, int]] = []  # (t, cpu %, rss bytes)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Begin sampling."""
        self._process.cpu_percent()
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        """End sampling."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def rss_now(self) -> int:
        """Current RSS in bytes."""
        return self._process.memory_info().rss

    async def _sample(self) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(self._period)
            self.samples.append((time.monotonic() - started, self._process.cpu_percent(),
                                 self._process.memory_info().rss))
