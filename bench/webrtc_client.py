"""The bench's one WebRTC session (`--webrtc`): headless Chromium talks to the server the way the
talk page does, so the browser path (Opus, jitter buffer, aiortc) is timed too.

The browser half is `webrtc_client.js`; this module launches Debian's Chromium through
Playwright (never `playwright install`), plays each prompt into the peer connection in real time
and turns what the page measured into the same `TurnResult`s as the WebSocket client.
"""

import asyncio
import base64
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

from loguru import logger

from voxline.bench.client import (
    AUDIBLE_RMS,
    PAUSE_BETWEEN_TURNS_SECS,
    TurnEvents,
    TurnResult,
    time_audio,
)
from voxline.bench.prompts import Prompt

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    # Host candidates as plain IPs (aiortc cannot resolve Chrome's mDNS .local names).
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PAGE_SCRIPT = Path(__file__).with_name("webrtc_client.js")
CONNECT_TIMEOUT_SECS = 20.0
POLL_SECS = 0.1  # how often the page's measurements are collected (they carry their own times)
WINDOW_SECS = 0.02  # the page meters the bot's audio in 20 ms windows
# The browser hears a reply in real time (a WebSocket client gets it as fast as it is made), so a
# turn may last this much longer before it counts as unanswered: a long story plays for ~30 s.
REPLY_PLAYOUT_SECS = 60.0
# Under load the TTS can fall behind real time: the bot stops, then goes on with its reply. The
# turn ends once it has been quiet this long (the next prompt would otherwise talk over it).
REPLY_SETTLE_SECS = 2.0


class WebRTCSessionError(Exception):
    """The WebRTC session could not run at all; the message names the cause and the fix."""


def http_origin(ws_url: str) -> str:
    """`ws://host:port/ws` → `http://host:port` (where the talk page and /api/offer live)."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


async def run_webrtc_session(origin: str, prompts: list[Prompt], *, session: int, turns: int,
                             turn_timeout_secs: float = 30.0) -> list[TurnResult]:
    """Talk `turns` times over one peer connection from a fresh headless Chromium; one result
    per turn (turn errors recorded, not raised). Raises WebRTCSessionError if it cannot start."""
    async_playwright, playwright_error = _playwright()
    if not Path(CHROMIUM).exists():
        raise WebRTCSessionError(f"--webrtc needs Chromium at {CHROMIUM}; "
                                 "install it with `apt-get install chromium`")
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = await _connected_page(browser, origin)
                return await _turns(page, prompts, session, turns, turn_timeout_secs)
            finally:
                await browser.close()
    except playwright_error as e:
        raise WebRTCSessionError(f"WebRTC session to {origin} failed: {_first_line(e)}") from None


def _playwright():
    try:
        from playwright.async_api import Error, async_playwright
    except ImportError:
        raise WebRTCSessionError(
            "--webrtc needs the playwright package: pip install playwright==1.65.2 "
            "(it drives Debian's Chromium; do not run `playwright install`)") from None
    return async_playwright, Error


async def _connected_page(browser, origin: str):
    """A page on the server's origin (same-origin /api/offer) with a live peer connection."""
    page = await browser.new_page()
    page.on("pageerror", lambda e: logger.debug("bench webrtc page error: {}", e))
    await page.goto(f"{origin}/health")
    await page.add_script_tag(content=PAGE_SCRIPT.read_text())
    await page.evaluate("t => window.voxlineBench.connect(t)", CONNECT_TIMEOUT_SECS)
    return page


async def _turns(page, prompts: list[Prompt], session: int, turns: int,
                 turn_timeout_secs: float) -> list[TurnResult]:
    results: list[TurnResult] = []
    for turn in range(turns):
        prompt = prompts[(session + turn) % len(prompts)]
        result = TurnResult(session, turn, prompt.id, prompt.text)
        try:
            await asyncio.wait_for(_one_turn(page, prompt, result),
                                   turn_timeout_secs + prompt.duration_secs + REPLY_PLAYOUT_SECS)
        except TimeoutError:
            result.error = "no complete reply in time"
        results.append(result)
        await asyncio.sleep(PAUSE_BETWEEN_TURNS_SECS)
    await page.evaluate("window.voxlineBench.close()")
    return results


async def _one_turn(page, prompt: Prompt, result: TurnResult) -> None:
    """Play the prompt, collect until the bot has stopped speaking for `REPLY_SETTLE_SECS`,
    then time the audio up to its last stop. Underruns are the browser jitter buffer's
    concealment events during the turn (playout is paced, so arrival gaps cannot show them)."""
    concealed = await page.evaluate("window.voxlineBench.concealmentEvents()")
    speech_end = await page.evaluate(
        "([pcm, end]) => window.voxlineBench.say(pcm, end)",
        [base64.b64encode(prompt.pcm).decode(), prompt.speech_end_secs])
    audio: list[tuple[float, float, bool]] = []
    turn, stopped_at, quiet_since = TurnEvents(result), 0.0, None
    while quiet_since is None or time.monotonic() - quiet_since < REPLY_SETTLE_SECS:
        await asyncio.sleep(POLL_SECS)
        taken = await page.evaluate("window.voxlineBench.take()")
        for at, event in taken["events"]:
            turn.record(event)
            stopped_at = at if event.get("type") == "bot.stopped_speaking" else stopped_at
        audio += [(at, WINDOW_SECS, rms > AUDIBLE_RMS) for at, rms in taken["audio"]]
        quiet_since = (quiet_since or time.monotonic()) if turn.is_done else None
    time_audio([piece for piece in audio if piece[0] <= stopped_at], speech_end, result)
    result.underruns = await page.evaluate("window.voxlineBench.concealmentEvents()") - concealed


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
