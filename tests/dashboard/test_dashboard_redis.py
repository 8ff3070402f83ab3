"""Two workers and a separate dashboard on one Redis, watched in a real Chromium."""

import asyncio

import pytest

from tests.browser import chromium
from tests.conftest import RunningServer, make_settings
from tests.helpers import wer
from tests.redis_server import RedisServer
from voxline.bus import create_bus
from voxline.dashboard.app import create_dashboard_app
from voxline.dashboard.collector import Collector
from voxline.server import VoxlineServer, uvicorn_config
from voxline.talk import talk

BUS_SECRET = "dashboard-test-bus-secret-0123456789"

QUESTIONS = ["What is the capital of France?", "Tell me something interesting about the ocean."]


class DashboardServer:
    """`voxline dashboard` in the test's loop: its own bus connection, collector and app."""

    def __init__(self, redis_url: str, port: int = 0):
        self._settings = make_settings(bus={"url": redis_url, "secret": BUS_SECRET},
                                       server={"port": port})

    async def start(self) -> "DashboardServer":
        """Start (again): a fresh bus connection, collector and server on the same port."""
        settings = self._settings
        self.bus = create_bus(settings.bus, origin="dashboard-test")
        # Its page is read after conversations ended: keep their transcripts (retention memory).
        self.collector = Collector(self.bus, history_turns=50, transcript_retention="memory")
        app = create_dashboard_app(self.collector, self.bus, source="dashboard")
        self._server = VoxlineServer(uvicorn_config(app, settings))
        await self.bus.start()
        await self.collector.start()
        self._task = asyncio.create_task(self._server.serve())
        await self._server.ready.wait()
        self.port = self._server.port
        self._settings = make_settings(bus={"url": settings.bus.url, "secret": BUS_SECRET},
                                       server={"port": self.port})
        self.url = f"http://127.0.0.1:{self.port}/"
        return self

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task
        await self.collector.close()
        await self.bus.close()


@pytest.fixture(scope="module")
async def cluster(models):
    async with RedisServer() as redis_server:
        settings = make_settings(bus={"url": redis_server.url, "secret": BUS_SECRET},
                                 dashboard={"mount_in_serve": False})
        workers = [await RunningServer(settings, models).start() for _ in range(2)]
        dashboard = await DashboardServer(redis_server.url).start()
        yield redis_server, workers, dashboard
        await dashboard.stop()
        for worker in workers:
            await worker.stop()


async def _talk(worker, wav):
    return await talk(url=worker.ws_url, wav=wav, out=None, timeout_secs=90,
                      printer=lambda line: None)


async def test_both_workers_conversations_appear_live(cluster, speech, artifacts):
    _, workers, dashboard = cluster
    async with chromium(None) as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(dashboard.url)
        await page.wait_for_function("window.dashboard.connected")
        results = await asyncio.gather(*(_talk(w, speech(q)) for w, q in
                                         zip(workers, QUESTIONS, strict=True)))
        cards = []
        for result in results:
            session_id = next(e["session_id"] for e in result.events if e["type"] == "ready")
            card = page.locator(f'[data-session="{session_id}"]')
            await card.locator("li.bot").first.wait_for(timeout=5000)
            cards.append(await card.inner_text())
        delays = await page.evaluate(
            "window.dashboard.received.filter(r => r.topic.startsWith('voice.') "
            "|| r.topic === 'tts.spoken').map(r => r.at - r.ts)")
        bars = await page.locator("#latency-chart rect.bar").count()
        await page.screenshot(path=str(artifacts / "dashboard-two-workers.png"), full_page=True)
        await page.click("nav button[data-tab=services]")
        for worker in workers:
            await page.locator(f'[data-worker="{worker.worker.worker_id}"]').wait_for(timeout=5000)
    for card, question, worker in zip(cards, QUESTIONS, workers, strict=True):
        assert worker.worker.worker_id in card
        user_line = card.splitlines()[1] if len(card.splitlines()) > 1 else card
        assert wer(question, user_line) <= 0.25 or question.split()[-1].strip("?.") in card
    assert delays and max(delays) < 1.0, f"events reached the page late: {delays}"
    assert bars >= 12, "a stacked bar per answered turn, from both workers"


async def test_redis_outage_mid_conversation(cluster, speech):
    redis_server, workers, dashboard = cluster
    async with chromium(None) as browser:
        page = await browser.new_page()
        await page.goto(dashboard.url)
        await page.wait_for_function("window.dashboard.connected")
        conversation = asyncio.create_task(_talk(workers[0], speech(QUESTIONS[1])))
        await asyncio.sleep(1.0)  # mid-question
        await redis_server.stop()
        await page.wait_for_function("window.dashboard.busHealth === 'degraded'", timeout=15000)
        result = await conversation  # the conversation completes without Redis
        await redis_server.start()
        await page.wait_for_function("window.dashboard.busHealth === 'healthy'", timeout=20000)
        after = await _talk(workers[1], speech(QUESTIONS[0]))
        session_id = next(e["session_id"] for e in after.events if e["type"] == "ready")
        await page.locator(f'[data-session="{session_id}"] li.bot').first.wait_for(timeout=5000)
        finals = await page.evaluate(
            f"window.dashboard.sessions['{session_id}'].transcript"
            ".filter(l => l.who === 'user').length")
    assert result.texts("transcript.final") and result.reply_pcm
    assert finals == 1, "each event shown once (no duplicates after reconnecting)"


async def test_the_page_reconnects_by_itself_when_the_dashboard_restarts(cluster):
    redis_server = cluster[0]
    dashboard = await DashboardServer(redis_server.url).start()
    async with chromium(None) as browser:
        page = await browser.new_page()
        await page.goto(dashboard.url)
        await page.wait_for_function("window.dashboard.connected")
        await dashboard.stop()
        await page.wait_for_function("!window.dashboard.connected", timeout=10000)
        state = await page.locator("#feed-state").inner_text()
        await dashboard.start()  # same port
        try:
            await page.wait_for_function("window.dashboard.connected", timeout=15000)
            await page.wait_for_function(
                "Object.keys(window.dashboard.workers).length >= 2", timeout=10000)
        finally:
            await dashboard.stop()
    assert state == "reconnecting…"
