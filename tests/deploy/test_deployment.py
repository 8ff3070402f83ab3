"""docs/operations.md's scale-out, run as written: two workers, Redis and the dashboard behind
nginx with the files in deploy/. Clients are distinct loopback addresses (127.0.0.2, ...)."""

import asyncio
import http.client
import json
import shutil
import signal
import ssl
import subprocess
from pathlib import Path

import pytest
import websockets

from tests.browser import chromium, mic_file
from tests.deploy.cluster import REPO, start_deployment, stop_deployment
from tests.helpers import wer
from tests.sdp import audio_offer_sdp
from tests.ws_client import ask, expect_close, expect_error, start

pytestmark = pytest.mark.slow
QUESTION = "What is the capital of France?"
IDLE_TIMEOUT_SECS = 40  # a WebRTC peer that never connects holds its slot until it gives up


@pytest.fixture(scope="module")
async def deployment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deployment")
    deployed = await start_deployment(folder)
    yield deployed
    await stop_deployment(deployed)


@pytest.fixture
async def idle(deployment):
    """The deployment, once no session is left on either worker from an earlier test."""
    async with asyncio.timeout(IDLE_TIMEOUT_SECS):
        while any(sessions(w) for w in deployment.workers):  # noqa: ASYNC110 (a counter)
            await asyncio.sleep(0.2)
    return deployment


def sessions(worker) -> int:
    return worker.ready_info().get("sessions", 0)


def client_tls(deployment) -> ssl.SSLContext:
    return deployment.certificate.client_context()


def through_nginx(deployment, source: str, **headers):
    """A WebSocket client at `source`, connected to the public address."""
    return websockets.connect(deployment.wss_url, ssl=client_tls(deployment), max_size=None,
                              open_timeout=10, local_addr=(source, 0),
                              additional_headers=headers or None)


def straight_to(worker, source: str):
    return websockets.connect(f"ws://127.0.0.1:{worker.port}/ws", max_size=None,
                              open_timeout=10, local_addr=(source, 0))


def _https(deployment, method: str, path: str, body: dict, source: str) -> tuple[int, dict]:
    connection = http.client.HTTPSConnection("127.0.0.1", deployment.port, timeout=30,
                                             context=client_tls(deployment),
                                             source_address=(source, 0))
    try:
        connection.request(method, path, json.dumps(body),
                           {"Content-Type": "application/json",
                            "Origin": deployment.https_url})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


async def https(deployment, method: str, body: dict, source: str) -> tuple[int, dict]:
    return await asyncio.to_thread(_https, deployment, method, "/api/offer", body, source)


def upstream_statuses(deployment) -> list[str]:
    """`$upstream_status` of each request nginx proxied ("503, 200": tried twice)."""
    log = deployment.folder / "upstream.log"
    return log.read_text().splitlines() if log.exists() else []


async def test_a_websocket_conversation_through_nginx(idle, speech):
    async with through_nginx(idle, "127.0.0.2") as ws:
        await start(ws)
        events = await ask(ws, speech(QUESTION), until="bot.stopped_speaking")
    finals = [e["text"] for e in events if e["type"] == "transcript.final"]
    assert finals and wer(QUESTION, finals[0]) <= 0.2, finals
    assert any(e["type"] == "bot.reply" and e["text"].strip() for e in events), events


async def test_the_talk_page_calls_through_nginx(idle, speech, tmp_path):
    """Regression: with the documented `Host $host` the page's POST /api/offer was refused
    (403: its Origin keeps the port that $host drops)."""
    mic = mic_file(tmp_path / "mic.wav", (None, 1.0), (speech(QUESTION), 12.0))
    async with chromium(mic) as browser:
        page = await browser.new_page(ignore_https_errors=True)
        await page.goto(idle.https_url + "/")
        await page.click("#talk")
        await page.wait_for_function(
            "window.voxline.events.some(e => e.type === 'bot.stopped_speaking')", timeout=60000)
        user_lines = await page.locator("#transcript li.user").all_inner_texts()
    assert user_lines and wer(QUESTION, user_lines[0]) <= 0.2, user_lines


async def test_a_call_s_later_signalling_reaches_the_worker_that_holds_it(idle):
    """Trickled candidates (PATCH) and a renegotiation (POST with the pc_id) go through the
    balancer, which may pick another worker: that one answers 404 and nginx tries the next."""
    sdp = await audio_offer_sdp()
    status, answer = await https(idle, "POST", {"sdp": sdp, "type": "offer"}, "127.0.0.20")
    assert status == 200, answer
    for _ in range(4):
        status, reply = await https(idle, "PATCH", {"pc_id": answer["pc_id"], "candidates": []},
                                    "127.0.0.20")
        assert status < 300, reply
    status, reply = await https(idle, "POST", {"sdp": sdp, "type": "offer",
                                               "pc_id": answer["pc_id"]}, "127.0.0.20")
    assert status != 404 and reply.get("error") != "unknown_peer", reply


async def test_per_address_limits_see_each_client_through_the_proxy(idle):
    """One live session per address per worker: a client's third session is refused, another
    client's is not, and an X-Forwarded-For a client sends is replaced by nginx."""
    async with (through_nginx(idle, "127.0.0.2") as first, through_nginx(idle, "127.0.0.2") as
                second):
        await start(first)
        await start(second)  # on the other worker (the balancer sends it to the less busy one)
        async with through_nginx(idle, "127.0.0.3", **{"X-Forwarded-For": "127.0.0.2"}) as other:
            await start(other)  # believed as 127.0.0.2, it would be refused
            # To the worker with one session (the other is full): 127.0.0.2's, whatever the
            # client claims.
            async with through_nginx(idle, "127.0.0.2",
                                     **{"X-Forwarded-For": "127.0.0.9"}) as third:
                await third.send(json.dumps({"type": "start", "sample_rate": 16000}))
                await expect_error(third, "too_many_sessions")


async def test_a_full_worker_s_signalling_is_passed_to_another(idle):
    first, second = idle.workers
    async with straight_to(first, "127.0.0.5") as a, straight_to(first, "127.0.0.6") as b:
        await start(a)
        await start(b)
        sdp = await audio_offer_sdp()
        for source in ("127.0.0.8", "127.0.0.9"):
            status, answer = await https(idle, "POST", {"sdp": sdp, "type": "offer"}, source)
            assert status == 200, answer
        assert sessions(first) == 2 and sessions(second) == 2
    assert any(line.startswith("503, ") for line in upstream_statuses(idle)), \
        upstream_statuses(idle)


async def test_a_worker_stopped_mid_conversation(idle, speech):
    """SIGTERM: its client is told, the next sessions land on the other worker, the dashboard
    sees the session end for that reason, and the rest carry on."""
    async with through_nginx(idle, "127.0.0.4") as ws:
        await start(ws)
        stopping = next(w for w in idle.workers if sessions(w))
        other = next(w for w in idle.workers if w is not stopping)
        stopping.process.send_signal(signal.SIGTERM)
        assert await expect_error(ws, "server_shutdown")
        await expect_close(ws, 1000)
    try:
        await asyncio.wait_for(stopping.process.wait(), 15)
        assert stopping.process.returncode == 0
        async with through_nginx(idle, "127.0.0.4") as ws:
            await start(ws)
            events = await ask(ws, speech(QUESTION))
            assert events[-1]["type"] == "transcript.final"
            assert sessions(other) == 1
        async with websockets.connect(f"ws://127.0.0.1:{idle.dashboard.port}/ws") as dash:
            snapshot = json.loads(await dash.recv())
        reasons = [s.get("reason") for s in snapshot["sessions"].values()
                   if f":{stopping.port}" in s["worker"]]
        assert "server shutdown" in reasons, snapshot["sessions"]
        statuses = {worker_id: w["status"] for worker_id, w in snapshot["workers"].items()}
        assert [s["stopping"] for i, s in statuses.items() if i.endswith(f":{stopping.port}")] \
            == [True], statuses
        assert [s["stopping"] for i, s in statuses.items() if i.endswith(f":{other.port}")] \
            == [False], statuses
        async with chromium(None) as browser:  # and the page (Services) says so at once
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{idle.dashboard.port}/")
            pill = page.locator(f'[data-worker$=":{stopping.port}"] .pill')
            await pill.filter(has_text="stopped").wait_for(state="attached", timeout=10000)
    finally:
        await stopping.start()  # the next test's deployment has both workers again


def test_the_systemd_units_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    environment = tmp_path / "voxline.env"
    environment.write_text((REPO / "deploy" / "voxline.env.example").read_text())
    units = []
    for unit in sorted((REPO / "deploy" / "systemd").glob("*.service")):
        text = unit.read_text().replace("/opt/voxline", str(REPO)).replace(
            "/etc/voxline/voxline.env", str(environment))
        name = unit.name.replace("@.service", "@8000.service")
        (tmp_path / unit.name).write_text(text)
        (tmp_path / name).write_text(text)
        units.append(tmp_path / name)
    result = subprocess.run([tool, "verify", *map(str, units)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Unknown" not in result.stderr and "ignoring" not in result.stderr, result.stderr
    assert len(units) == 3 and Path(REPO / ".venv" / "bin" / "voxline").exists()
