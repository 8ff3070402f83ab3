"""The dashboard mounted in one `voxline serve` (in-process bus), in a real Chromium."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
import websockets
from pydantic import ValidationError

from tests.browser import chromium
from tests.conftest import RunningServer, make_settings
from tests.helpers import wer
from voxline.bus.events import ControlCommand, LogLine, TurnMetrics
from voxline.talk import talk

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
async def worker(models):
    # The tests read a conversation's transcript on the page after it has ended, which the
    # default privacy.transcript_retention ("none") clears.
    settings = make_settings(privacy={"transcript_retention": "memory"})
    server = await RunningServer(settings, models).start()
    yield server
    await server.stop()


async def test_monitor_shows_a_live_conversation_and_its_latency(worker, speech, artifacts):
    async with chromium(None) as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(worker.http_url + "/dashboard/")
        await page.wait_for_function("window.dashboard.connected")
        result = await talk(url=worker.ws_url, wav=speech(QUESTION), out=None, timeout_secs=60,
                            printer=lambda line: None)
        session_id = next(e["session_id"] for e in result.events if e["type"] == "ready")
        card = page.locator(f'[data-session="{session_id}"]')
        await card.locator("li.user").first.wait_for(timeout=5000)
        await card.locator("li.bot").first.wait_for(timeout=5000)
        user_text = await card.locator("li.user").first.inner_text()
        bars = await page.locator("#latency-chart rect.bar").count()
        p50 = await page.locator("#p50").inner_text()
        delays = await page.evaluate(
            "window.dashboard.received.filter(r => r.topic.startsWith('voice.') "
            "|| r.topic === 'tts.spoken').map(r => r.at - r.ts)")
        await page.screenshot(path=str(artifacts / "dashboard-monitor.png"), full_page=True)
        await page.click("nav button[data-tab=services]")
        await page.locator(f'[data-worker="{worker.worker.worker_id}"]').wait_for(timeout=5000)
        services = await page.locator(f'[data-worker="{worker.worker.worker_id}"]').inner_text()
        await page.screenshot(path=str(artifacts / "dashboard-services.png"), full_page=True)
    assert wer(QUESTION, user_text) <= 0.2, user_text
    assert bars >= 6, "one stacked bar (6 stages) per answered turn"
    assert p50.endswith(" s")
    assert delays and max(delays) < 1.0, f"events reached the page late: {delays}"
    for part in ("CPU", "RSS", "stt", "llm", "tts", "bus"):
        assert part in services, services


MARKUP = '<img src=x onerror="window.pwned=1">'


def test_event_ids_with_markup_are_refused_by_the_schema():
    with pytest.raises(ValidationError):
        TurnMetrics(session_id=MARKUP, turn=1, vad_secs=0, stt_secs=0, turn_secs=0,
                    llm_secs=0, tts_secs=0, transport_secs=0, total_secs=0)
    with pytest.raises(ValidationError):
        LogLine(level="<b>INFO</b>", message="x")


async def test_markup_in_an_event_is_shown_as_text_never_run(worker):
    """A forged turn.metrics whose session_id held markup ran script in the dashboard (the
    chart was built as an SVG string); the page must treat every field as text. The event is
    built past the schema here, as if it had got through."""
    async with chromium(None) as browser:
        page = await browser.new_page()
        await page.goto(worker.http_url + "/dashboard/")
        await page.wait_for_function("window.dashboard.connected")
        worker.worker.bus.publish_nowait(TurnMetrics.model_construct(
            session_id=MARKUP, source="x", ts=time.time(), v=1, turn=1, vad_secs=0.1,
            stt_secs=0.1, turn_secs=0.1, llm_secs=0.1, tts_secs=0.1, transport_secs=0.1,
            total_secs=0.6, echo_guard_hits=0))
        await page.wait_for_function(
            "[...document.querySelectorAll('#latency-chart title')]"
            ".some(t => t.textContent.includes('onerror'))", timeout=10000)
        await asyncio.sleep(0.5)  # an injected image would have failed to load by now
        assert await page.evaluate("window.pwned") is None
        assert await page.locator("#latency-chart img").count() == 0


async def test_end_session_from_the_dashboard(worker, speech):
    """Control round trip: the page's End button ends the session on its worker, acked."""
    async with websockets.connect(worker.ws_url) as client:
        await client.send(json.dumps({"type": "start", "sample_rate": 16000}))
        ready = json.loads(await client.recv())
        async with chromium(None) as browser:
            page = await browser.new_page()
            await page.goto(worker.http_url + "/dashboard/")
            end = page.locator(f'[data-session="{ready["session_id"]}"] button.danger')
            await end.click(timeout=10000)
            await page.click("nav button[data-tab=control]")
            ack = page.locator("#acks li").first
            await ack.wait_for(timeout=10000)
            ack_text = await ack.inner_text()
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(client.recv(), 10)
    assert "session ended" in ack_text
    assert ready["session_id"] not in worker.host


async def test_set_persona_and_reload_are_acknowledged(worker):
    async with websockets.connect(worker.http_url.replace("http", "ws") + "/dashboard/ws") as ws:
        snapshot = json.loads(await ws.recv())
        assert snapshot["type"] == "snapshot"
        for request in (
            {"action": "set_persona", "system_prompt": "You are a pirate. Answer briefly."},
            {"action": "reload_model", "model_kind": "tts"},
            {"action": "reload_model", "model_kind": "gpu"},
        ):
            await ws.send(json.dumps({"type": "control", "worker": worker.worker.worker_id,
                                      **request}))
        replies = []
        while len([r for r in replies if r.get("topic") == "control.ack"]) < 2:
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
    sent = [r for r in replies if r.get("type") in ("sent", "error")]
    acks = [r["event"] for r in replies if r.get("topic") == "control.ack"]
    assert [a["ok"] for a in acks] == [True, True], acks
    assert sent[-1]["type"] == "error" and "model_kind" in sent[-1]["message"]
    assert worker.host.persona.system_prompt.startswith("You are a pirate")


async def test_a_bad_control_message_gets_an_error_and_the_feed_stays_open(worker):
    async with websockets.connect(worker.http_url.replace("http", "ws") + "/dashboard/ws") as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
        for raw in ("{not json", "[" * 100_000 + "]" * 100_000):
            await ws.send(raw)
            reply = await _next_reply(ws)
            assert reply["type"] == "error" and "control" in reply["message"], reply
        await ws.send(json.dumps({"type": "control", "worker": worker.worker.worker_id,
                                  "action": "end_session", "session_id": "0123456789ab"}))
        assert (await _next_reply(ws))["type"] == "sent"


async def test_control_commands_are_rate_limited_and_say_who_sent_them(models):
    settings = make_settings(dashboard={"commands_per_minute": 2})
    server = await RunningServer(settings, models).start()
    commands = server.worker.bus.subscribe(lambda e: isinstance(e, ControlCommand))
    try:
        async with websockets.connect(server.http_url.replace("http", "ws") +
                                      "/dashboard/ws") as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            request = {"type": "control", "worker": server.worker.worker_id,
                       "action": "end_session", "session_id": "0123456789ab"}
            replies = []
            for _ in range(3):
                await ws.send(json.dumps(request))
                replies.append(await _next_reply(ws))
        assert [r["type"] for r in replies] == ["sent", "sent", "error"], replies
        assert "too many control commands" in replies[2]["message"]
        command = await asyncio.wait_for(commands.get(), 5)
        # On the bus, for every dashboard and the log: who (no keys on loopback), from where.
        assert (command.issued_by, command.issued_from) == ("local", "127.0.0.1")
    finally:
        commands.close()
        await server.stop()


async def _next_reply(ws) -> dict:
    """The next answer to a control message (the feed's events in between are skipped)."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("type") in ("sent", "error"):
            return message


async def test_token_is_required_when_configured(models):
    settings = make_settings(dashboard={"token": "s3cret-token"})
    server = await RunningServer(settings, models).start()
    base = server.http_url + "/dashboard/"
    try:
        # The page holds no data: it opens without the token, and the feed asks for it.
        assert await asyncio.to_thread(_status, base) == 200
        ws_base = base.replace("http", "ws") + "ws"
        for url in (ws_base, ws_base + "?token=wrong"):
            async with websockets.connect(url) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd.code == 4401
        async with websockets.connect(ws_base + "?token=s3cret-token") as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
    finally:
        await server.stop()


async def test_the_token_leaves_the_address_bar_and_the_history_after_first_use(models):
    """A dashboard URL with ?token= gets copied, bookmarked and screen-shared: the page keeps
    the token in the tab's session storage and takes it out of its URL."""
    settings = make_settings(dashboard={"token": "s3cret-token"})
    server = await RunningServer(settings, models).start()
    try:
        async with chromium(None) as browser:
            page = await browser.new_page()
            await page.goto(server.http_url + "/dashboard/?token=s3cret-token&view=1")
            await page.wait_for_function("window.dashboard.connected", timeout=15000)
            assert "s3cret" not in page.url and page.url.endswith("/dashboard/?view=1")
            await page.reload()  # the tab still has it
            await page.wait_for_function("window.dashboard.connected", timeout=15000)
            assert "s3cret" not in page.url
            await page.go_back()  # the entry was replaced: no step back to the token's URL
            assert page.url == "about:blank"
    finally:
        await server.stop()


def test_binding_beyond_loopback_requires_keys_for_the_dashboard_too(tmp_path):
    """It used to refuse to start without dashboard.token; now API keys guard it there."""
    from voxline.server import key_store

    settings = make_settings(auth={"keys_file": tmp_path / "keys.json"})
    assert key_store(settings, "0.0.0.0") is not None
    assert key_store(settings, "127.0.0.1") is None


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


async def test_page_keeps_up_with_25_sessions(worker):
    """20+ sessions: every one gets its card and transcript, and the page stays responsive."""
    from voxline.bus import SessionBus
    from voxline.bus.events import SessionEnded, SessionStarted, TranscriptFinal

    async with chromium(None) as browser:
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        await page.goto(worker.http_url + "/dashboard/")
        await page.wait_for_function("window.dashboard.connected")
        buses = [SessionBus(worker.worker.bus, session_id=f"load{i:02d}", source="load-worker")
                 for i in range(25)]
        for turn in range(4):
            for i, bus in enumerate(buses):
                if turn == 0:
                    bus.publish(SessionStarted, transport="websocket")
                bus.publish(TranscriptFinal, text=f"session {i} turn {turn}")
            await asyncio.sleep(0.05)
        await page.wait_for_function(
            "document.querySelectorAll('#sessions .session').length >= 25"
            " && [...document.querySelectorAll('#sessions li.user')].length >= 100",
            timeout=10000)
        last = await page.locator('[data-session="load24"] li.user').last.inner_text()
        for bus in buses:
            bus.publish(SessionEnded)
    assert last == "session 24 turn 3"
