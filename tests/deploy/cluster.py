"""The documented deployment, on loopback: redis-server, two `voxline serve` workers, the
standalone dashboard, and nginx serving deploy/nginx/voxline.conf with only its EDIT lines
filled in (ports, name, certificate). Every process is the test's own child, stopped with it."""

import asyncio
import json
import re
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.loopback_tls import LOOPBACK, LoopbackCertificate
from tests.redis_server import RedisServer
from voxline.bench.server_process import ServerProcess, free_port, is_listening

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "deploy" / "nginx" / "voxline.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_START_SECS = 10


def worker_env(redis_url: str, bus_secret: str) -> dict[str, str]:
    """What deploy/voxline.env.example sets, for loopback and the fast test models."""
    return {
        "VOXLINE_LLM__MODEL": "smollm2-135m", "VOXLINE_LLM__MAX_TOKENS": "60",
        "VOXLINE_LLM__TEMPERATURE": "0",
        "VOXLINE_SERVER__FORWARDED_ALLOW_IPS": json.dumps([LOOPBACK]),  # nginx's address
        "VOXLINE_SERVER__MAX_SESSIONS": "2",
        "VOXLINE_LIMITS__MAX_SESSIONS_PER_IP": "1",
        "VOXLINE_WEBRTC__ICE_HOST_ADDRESSES": json.dumps([LOOPBACK]),
        # Test offers never connect: their slots come back soon.
        "VOXLINE_WEBRTC__CONNECT_TIMEOUT_SECS": "5",
        "VOXLINE_BUS__URL": redis_url, "VOXLINE_BUS__SECRET": bus_secret,
        "VOXLINE_DASHBOARD__MOUNT_IN_SERVE": "false",
    }


def filled_site(workers: list[int], port: int, certificate: LoopbackCertificate) -> str:
    """deploy/nginx/voxline.conf with its EDIT lines filled in for loopback, nothing else."""
    text = SITE.read_text()
    examples = list(re.finditer(r"(?m)^    server 10\.0\.0\.\d+:8000([^;]*);.*\n", text))
    assert examples, "deploy/nginx/voxline.conf has no example worker line"
    upstream = "".join(f"    server {LOOPBACK}:{p}{examples[0][1]};\n" for p in workers)
    for example in reversed(examples):  # the workers where the examples were
        text = (text[:example.start()] + (upstream if example is examples[0] else "")
                + text[example.end():])
    replacements = [
        (r"(?m)^    listen 443 ssl;.*$", f"    listen {LOOPBACK}:{port} ssl;"),
        (r"(?m)^    server_name voice\.example\.org;.*$", f"    server_name {LOOPBACK};"),
        (r"(?m)^    ssl_certificate /etc/ssl/certs/\S+;.*$",
         f"    ssl_certificate {certificate.cert_path};"),
        (r"(?m)^    ssl_certificate_key /etc/ssl/private/\S+;.*$",
         f"    ssl_certificate_key {certificate.key_path};"),
    ]
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text)
        assert count, f"deploy/nginx/voxline.conf no longer has a line matching {pattern!r}"
    settings = re.sub(r"#.*", "", text)
    assert "10.0.0." not in settings and "example.org" not in settings, \
        f"an EDIT value was left unfilled:\n{text}"
    return text


def nginx_conf(site: Path, folder: Path) -> str:
    """A minimal nginx.conf around the site, everything under `folder`, in the foreground."""
    temp = "\n".join(f"    {name}_temp_path {folder / name};"
                     for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"daemon off;\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
            f"error_log {folder / 'error.log'} warn;\nevents {{}}\n"
            f"http {{\n    log_format upstream '$upstream_status';\n"
            f"    access_log {folder / 'upstream.log'} upstream;\n{temp}\n"
            f"    include {site};\n}}\n")


@dataclass
class Deployment:
    redis: RedisServer
    workers: list[ServerProcess]
    dashboard: ServerProcess
    nginx: asyncio.subprocess.Process
    port: int  # nginx's
    certificate: LoopbackCertificate
    folder: Path

    @property
    def https_url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def wss_url(self) -> str:
        return f"wss://{LOOPBACK}:{self.port}/ws"


async def start_nginx(folder: Path, site_text: str, port: int) -> asyncio.subprocess.Process:
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed (apt-get install nginx)")
    site = folder / "voxline.conf"
    site.write_text(site_text)
    conf = folder / "nginx.conf"
    conf.write_text(nginx_conf(site, folder))
    check = await asyncio.create_subprocess_exec(NGINX, "-t", "-c", str(conf), "-p", str(folder),
                                                 stderr=asyncio.subprocess.PIPE)
    _, errors = await check.communicate()
    assert check.returncode == 0, errors.decode()
    process = await asyncio.create_subprocess_exec(NGINX, "-c", str(conf), "-p", str(folder),
                                                   stderr=asyncio.subprocess.DEVNULL)
    for _ in range(int(NGINX_START_SECS / 0.05)):
        if await is_listening(port):
            return process
        await asyncio.sleep(0.05)
    process.kill()
    await process.wait()
    raise RuntimeError(f"nginx did not listen on {port}: {(folder / 'error.log').read_text()}")


async def start_deployment(folder: Path) -> Deployment:
    redis = RedisServer()
    await redis.start()
    env = worker_env(redis.url, secrets.token_hex(32))
    python = [sys.executable, "-m", "voxline", "--log-level", "INFO"]
    workers = [ServerProcess(f"worker{i}", [*python, "serve", "--port", str(port)], port, env,
                             log_path=folder / f"worker{i}.log")
               for i, port in enumerate((free_port(), free_port()), start=1)]
    dashboard_port = free_port()
    dashboard = ServerProcess("dashboard", [*python, "dashboard", "--port", str(dashboard_port)],
                              dashboard_port, env, log_path=folder / "dashboard.log")
    await asyncio.gather(*(w.start() for w in workers), dashboard.start(ready_path=None))
    certificate = LoopbackCertificate()
    port = free_port()
    nginx = await start_nginx(folder, filled_site([w.port for w in workers], port, certificate),
                              port)
    return Deployment(redis, workers, dashboard, nginx, port, certificate, folder)


async def stop_deployment(deployment: Deployment) -> None:
    deployment.nginx.terminate()
    await deployment.nginx.wait()
    for server in [*deployment.workers, deployment.dashboard]:
        await server.stop()
    await deployment.redis.stop()
    deployment.certificate.close()
