"""A real redis-server for tests: on a free loopback port, stoppable and restartable."""

import asyncio
import shutil
import socket

import pytest
import redis.asyncio as redis

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """`async with RedisServer() as server:` → `server.url`; `stop()`/`start()` keep the port."""

    def __init__(self):
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it and wait until it answers PING."""
        self._process = await asyncio.create_subprocess_exec(
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        client = redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            for _ in range(200):
                try:
                    if await client.ping():
                        return
                except (redis.ConnectionError, OSError):
                    await asyncio.sleep(0.02)
            raise RuntimeError("redis-server did not start")
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Kill it (like a crash)."""
        if self._process and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    async def __aenter__(self) -> "RedisServer":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
