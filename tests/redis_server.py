"""A real redis-server for tests: on a free loopback port, stoppable and restartable."""

import asyncio
import shutil
import socket
from pathlib import Path

import pytest
import redis.asyncio as redis

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """`async with RedisServer() as server:` → `server.url`; `stop()`/`start()` keep the port.
    `password`: AUTH required; `tls`: (certificate, key, CA) files, TLS only (rediss://)."""

    def __init__(self, *, password: str | None = None,
                 tls: tuple[Path, Path, Path] | None = None):
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._password, self._tls = password, tls
        auth = f":{password}@" if password else ""
        self.url = f"{'rediss' if tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it and wait until it answers PING."""
        args = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self._tls:
            certificate, key, ca = self._tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file",
                     str(certificate), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                     "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self._password:
            args += ["--requirepass", self._password]
        self._process = await asyncio.create_subprocess_exec(
            REDIS_SERVER, *args, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        tls = {"ssl_ca_certs": str(self._tls[2])} if self._tls else {}
        client = redis.from_url(self.url, socket_connect_timeout=0.5, **tls)
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
