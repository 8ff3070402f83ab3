"""The talk page in a real headless Chromium, over WebRTC on 127.0.0.1 only."""

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from tests.browser import DENIED, NO_DEVICE, chromium, mic_file
from tests.conftest import RunningServer, make_settings
from tests.helpers import wer

QUESTION = "What is the capital of France?"
STORY = "Please tell me a short story about a friendly dragon."
FOLLOW_UP = "Tell me something interesting about the ocean."


@pytest.fixture(scope="module")
async def webrtc_server(models):
    """Host candidates limited to 127.0.0.1: the test must pass on pure loopback."""
    settings = make_settings(webrtc={"ice_host_addresses": ["127.0.0.1"]})
    server = await RunningServer(settings, models).start()
    yield server
    await server.stop()


async def _events_until(page, condition_js: str, timeout_secs: float = 40):
    await page.wait_for_function(condition_js, timeout=timeout_secs * 1000)
    return await page.evaluate("window.voxline.events")


async def _talk(browser, url):
    page = await browser.new_page()
    await page.goto(url)
    await page.click("#talk")
    return page


async def _inbound_audio_energy(page) -> float:
    return await page.evaluate("""async () => {
        let energy = 0;
        (await window.voxline.pc.getStats()).forEach(r => {
            if (r.type === 'inbound-rtp' && r.kind === 'audio') energy += r.totalAudioEnergy || 0;
        });
        return energy;
    }""")


async def test_a_spoken_question_is_answered_in_the_page(webrtc_server, speech, tmp_path,
                                                         artifacts):
    mic = mic_file(tmp_path / "mic.wav", (None, 1.0), (speech(QUESTION), 12.0))
    async with chromium(mic) as browser:
        page = await _talk(browser, webrtc_server.http_url)
        events = await _events_until(
            page, "window.voxline.events.some(e => e.type === 'bot.stopped_speaking')")
        await page.wait_for_timeout(300)  # let the last audio packets be counted
        energy = await _inbound_audio_energy(page)
        user_lines = await page.locator("#transcript li.user").all_inner_texts()
        bot_lines = await page.locator("#transcript li.bot").all_inner_texts()
        conn = await page.locator("#conn-state").inner_text()
        await page.screenshot(path=str(artifacts / "webrtc-talk-page.png"), full_page=True)
        mobile = await browser.new_page(viewport={"width": 390, "height": 844})
        await mobile.goto(webrtc_server.http_url)
        await mobile.screenshot(path=str(artifacts / "webrtc-talk-page-phone.png"))
        assert await mobile.evaluate("document.documentElement.scrollWidth <= 390")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "ready"
    assert user_lines and wer(QUESTION, user_lines[0]) <= 0.2, user_lines
    assert bot_lines and bot_lines[0].strip(), bot_lines
    assert "turn.metrics" in kinds and conn == "connected"
    assert energy > 0.01, f"the browser received no bot audio (energy {energy})"
    assert await asyncio.to_thread(_status, webrtc_server.http_url + "/health") == 200


async def test_talking_over_the_bot_interrupts_it(webrtc_server, speech, tmp_path):
    mic = mic_file(tmp_path / "mic.wav", (None, 1.0), (speech(STORY), 3.2),
                   (speech(FOLLOW_UP), 15.0))
    async with chromium(mic) as browser:
        page = await _talk(browser, webrtc_server.http_url)
        events = await _events_until(
            page, "window.voxline.events.filter(e => e.type === 'transcript.final').length >= 2"
                  " && window.voxline.events.some(e => e.type === 'interrupted')")
        interrupted = await page.locator("#transcript li.bot.interrupted").count()
    kinds = [e["type"] for e in events]
    first_speaking = kinds.index("bot.started_speaking")
    assert first_speaking < kinds.index("interrupted"), kinds
    finals = [e["text"] for e in events if e["type"] == "transcript.final"]
    assert wer(FOLLOW_UP, finals[1]) <= 0.25, finals
    assert interrupted == 1


async def test_two_pages_are_two_independent_sessions(webrtc_server, speech, tmp_path):
    # Each page's microphone plays the file from its own start, and what it says before the
    # connection is up is lost (as with a person who speaks before the page says "listening").
    # Two pages connecting at once on 2 busy cores took over 1 s in CI: 3 s of silence first.
    mic = mic_file(tmp_path / "mic.wav", (None, 3.0), (speech(QUESTION), 12.0))
    async with chromium(mic) as browser:
        pages = [await _talk(browser, webrtc_server.http_url) for _ in range(2)]
        done = "window.voxline.events.some(e => e.type === 'transcript.final')"
        sessions = await asyncio.gather(*(_events_until(p, done, 60) for p in pages))
        assert webrtc_server.host.live == 2
        for page in pages:
            await page.close()
        for _ in range(100):  # closing a tab frees its session (keepalive watchdog: ~3 s)
            if webrtc_server.host.live == 0:
                break
            await asyncio.sleep(0.1)
    ids = [next(e["session_id"] for e in events if e["type"] == "ready") for events in sessions]
    assert ids[0] != ids[1]
    for events in sessions:
        finals = [e["text"] for e in events if e["type"] == "transcript.final"]
        assert len(finals) == 1 and wer(QUESTION, finals[0]) <= 0.2, finals
    assert webrtc_server.host.live == 0


@pytest.mark.parametrize(("microphone", "expected"), [
    (DENIED, "denied"),
    (NO_DEVICE, "no microphone was found"),
])
async def test_microphone_problems_get_a_clear_message(webrtc_server, microphone, expected):
    async with chromium(microphone) as browser:
        page = await browser.new_page()
        await page.goto(webrtc_server.http_url)
        await page.click("#talk")
        await page.wait_for_selector("#error:not([hidden])", timeout=10000)
        message = await page.locator("#error").inner_text()
    assert expected in message.lower(), message
    assert webrtc_server.host.live == 0


async def test_unreachable_server_gets_a_clear_message(webrtc_server, speech, tmp_path):
    mic = mic_file(tmp_path / "mic.wav", (speech(QUESTION), 1.0))
    async with chromium(mic) as browser:
        page = await browser.new_page()
        await page.goto(webrtc_server.http_url)
        await page.route("**/api/config", lambda route: route.abort())
        await page.click("#talk")
        await page.wait_for_selector("#error:not([hidden])", timeout=10000)
        message = await page.locator("#error").inner_text()
        await page.unroute("**/api/config")
    assert "unreachable" in message


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"sdp": "v=0\r\nthis is not sdp\r\n", "type": "offer"}, "bad_sdp"),
        ({"type": "offer"}, "bad_request"),
        ({"sdp": "v=0", "type": "answer"}, "bad_request"),
        ("not an object", "bad_request"),
        (None, "bad_json"),
        (b"[" * 100_000 + b"]" * 100_000, "bad_json"),  # past the parser's recursion limit
    ],
)
async def test_bad_offers_get_400_with_a_clear_message(webrtc_server, body, code):
    raw = b"{not json" if body is None else body if isinstance(body, bytes) else \
        json.dumps(body).encode()
    status, reply = await asyncio.to_thread(_post, webrtc_server.http_url + "/api/offer", raw)
    assert status == 400 and reply["error"] == code and reply["message"], reply
    assert await asyncio.to_thread(_status, webrtc_server.http_url + "/health") == 200


def _post(url: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status


async def test_ice_failure_gets_a_clear_message(webrtc_server, speech, tmp_path):
    """Loopback ICE cannot really fail (peer-reflexive candidates rescue any pair), so the
    browser's `failed` state is simulated on the live connection: the page must explain it,
    hang up, and the server must free the session (keepalive watchdog)."""
    mic = mic_file(tmp_path / "mic.wav", (speech(QUESTION), 1.0))
    async with chromium(mic) as browser:
        page = await browser.new_page()
        await page.goto(webrtc_server.http_url)
        await page.click("#talk")
        await page.wait_for_function("window.voxline.events.some(e => e.type === 'ready')")
        await page.evaluate("""() => {
            const pc = window.voxline.pc;
            Object.defineProperty(pc, 'iceConnectionState', { value: 'failed' });
            pc.oniceconnectionstatechange();
        }""")
        await page.wait_for_selector("#error:not([hidden])", timeout=10000)
        message = await page.locator("#error").inner_text()
        hangup_disabled = await page.locator("#hangup").is_disabled()
        for _ in range(300):  # the watchdog frees it within ~3 s (20 s if it never pinged)
            if webrtc_server.host.live == 0:
                break
            await asyncio.sleep(0.1)
    assert "ICE failed" in message and "TURN" in message, message
    assert hangup_disabled
    assert webrtc_server.host.live == 0
