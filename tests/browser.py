"""Headless Debian Chromium driven by Playwright, with a wav file as the microphone."""

import shutil
import subprocess
import wave
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


NO_DEVICE = Path("/nonexistent/no-microphone")  # `chromium(NO_DEVICE)`: allowed, but no device
DENIED = Path("/nonexistent/denied")  # `chromium(DENIED)`: a device, but permission refused


def chromium_args(mic_wav: Path | None) -> list[str]:
    """Flags for a loopback-only, no-network, fake-device browser."""
    args = [
        "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        # Host candidates as plain IPs (aiortc cannot resolve Chrome's mDNS .local names).
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ]
    if mic_wav == NO_DEVICE:
        args += ["--use-fake-ui-for-media-stream"]  # permission granted, but no device at all
    elif mic_wav == DENIED:
        args += ["--use-fake-device-for-media-stream"]  # no fake UI: headless refuses the prompt
    elif mic_wav is not None:
        args += [
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic_wav}",
        ]
    return args


@asynccontextmanager
async def chromium(mic_wav: Path | None):
    """A fresh browser; `mic_wav` plays (looped) as the microphone; None: no microphone."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=chromium_args(mic_wav), headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


def mic_file(path: Path, *parts: tuple[Path | None, float]) -> Path:
    """Concatenate (wav, seconds-of-silence-after) parts into one 16 kHz mono wav for the mic."""
    frames = b""
    for wav, silence_secs in parts:
        if wav is not None:
            with wave.open(str(wav), "rb") as w:
                frames += w.readframes(w.getnframes())
        frames += bytes(int(16000 * silence_secs) * 2)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(frames)
    return path


def chromium_version() -> str:
    """For test reports."""
    return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
