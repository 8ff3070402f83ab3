"""The `voxline` command, run as users run it: the installed script in a subprocess."""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from pathlib import Path

import pytest
import websockets

from tests.helpers import read_pcm, words
from tests.ws_client import connect, speak, start

VOXLINE = Path(sys.executable).parent / "voxline"
QUESTION = "What is the capital of France?"
REQUIRED_MODELS = ("whisper-tiny.en", "qwen2.5-0.5b", "smollm2-135m", "piper-en_US-joe-medium",
                   "silero-vad")


def voxline(*args: str, timeout_secs: float = 60) -> subprocess.CompletedProcess:
    """Run the installed `voxline` script (blocking: only for commands that need no server)."""
    return subprocess.run([str(VOXLINE), *args], capture_output=True, text=True,
                          timeout=timeout_secs, check=False)


async def voxline_async(*args: str, timeout_secs: float = 120) -> tuple[int, str, str]:
    """Run `voxline` without blocking the event loop (the test server lives in it)."""
    process = await asyncio.create_subprocess_exec(
        str(VOXLINE), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_secs)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode, stdout.decode(), stderr.decode()


def assert_one_error_line(stderr: str, *fragments: str) -> str:
    """The whole of stderr is one `voxline: error: ...` line naming each fragment."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("voxline: error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def unused_port():
    """A port that is bound (so nobody else takes it) but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# --- help ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, described", [
    ((), {"--config": "YAML config file", "--log-level": "TRACE, DEBUG",
          "serve": "load the models and serve /ws", "talk": "speak a wav file",
          "models": "list each model", "discord": "run the Discord voice bot",
          "wyoming": "for Home Assistant"}),
    (("serve",), {"--host": "bind address", "--port": "0 picks a free one",
                  "--ssl-certfile": "TLS certificate", "--ssl-keyfile": "TLS private key"}),
    (("talk",), {"--wav": "16-bit mono PCM wav", "--out": "reply audio",
                 "--url": "server WebSocket URL", "--timeout": "give up after",
                 "--mic": "microphone and speakers", "--list-devices": "audio devices",
                 "--input-device": "microphone", "--output-device": "speakers",
                 "--no-echo-cancellation": "headphones"}),
    (("models",), {"-h, --help": "show this help message"}),
    (("wyoming",), {"--host": "no authentication", "--port": "default 10300",
                    "--metrics-port": "/health and /metrics"}),
])
def test_help_describes_every_option(command, described):
    result = voxline(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: voxline {' '.join(command)}".rstrip()), result.stdout
    assert result.stderr == ""
    for option, description in described.items():
        line = next((line for line in result.stdout.splitlines()
                     if line.lstrip().startswith(option)), None)
        assert line is not None, f"{option} is not in:\n{result.stdout}"
        # The description may wrap onto the next line; it follows the option either way.
        after = result.stdout[result.stdout.index(line):]
        assert description in " ".join(after.split())[:200], (option, after[:200])


def test_no_command_is_a_usage_error():
    result = voxline()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "the following arguments are required: command" in result.stderr


# --- models -------------------------------------------------------------------------------------

def test_models_lists_every_model_with_a_good_checksum():
    result = voxline("models")
    assert result.returncode == 0, result.stdout + result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["model", "kind", "size", "checksum", "source"]
    for name in REQUIRED_MODELS:
        row = next((row for row in rows if row.split()[0] == name), None)
        assert row is not None, f"{name} is not listed:\n{result.stdout}"
        assert re.match(rf"{re.escape(name)}\s+(vad|stt|llm|tts)\s+[\d.]+ MB\s+ok\s+package \S",
                        row), row


def test_bench_with_an_unknown_prompt_is_one_clear_line():
    result = voxline("bench", "--prompts", "capital,dargon")
    assert result.returncode == 1
    assert_one_error_line(result.stderr, "no prompt named dargon", "dragon")


# --- talk ---------------------------------------------------------------------------------------

def test_talk_with_a_missing_wav_is_one_clear_line(tmp_path):
    missing = tmp_path / "missing.wav"
    result = voxline("talk", "--wav", str(missing))
    assert result.returncode == 1
    assert_one_error_line(result.stderr, str(missing), "cannot read wav", "No such file")
    assert result.stdout == ""


def test_talk_with_a_wav_that_is_not_16_bit_mono_names_the_fix(tmp_path):
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(bytes(6400))
    result = voxline("talk", "--wav", str(stereo))
    assert result.returncode == 1
    assert_one_error_line(result.stderr, "need 16-bit mono PCM wav", "sox")


def test_talk_to_a_port_where_nothing_listens_is_one_clear_line(speech, unused_port):
    url = f"ws://127.0.0.1:{unused_port}/ws"
    result = voxline("talk", "--wav", str(speech(QUESTION)), "--url", url, "--timeout", "10")
    assert result.returncode == 1
    assert_one_error_line(result.stderr, f"cannot connect to {url}: ")


async def test_talk_to_the_running_server_prints_the_turn_and_saves_the_reply(server, speech,
                                                                              tmp_path):
    out = tmp_path / "reply.wav"
    rc, stdout, stderr = await voxline_async(
        "talk", "--wav", str(speech(QUESTION)), "--url", server.ws_url, "--out", str(out),
        "--timeout", "90")
    assert rc == 0, stdout + stderr
    assert "Traceback" not in stderr
    lines = stdout.splitlines()
    assert lines[0] == "ready", stdout
    final = next(line for line in lines if line.startswith("transcript.final: "))
    assert {"capital", "france"} <= words(final), final
    latency = next(line for line in lines if line.startswith("latency: "))
    assert re.fullmatch(r"latency: vad [\d.]+s, stt [\d.]+s, .*total [\d.]+s", latency), latency
    assert any(line.startswith("bot.text: ") for line in lines), stdout
    assert re.fullmatch(rf"reply audio: [\d.]+s -> {re.escape(str(out))}", lines[-1]), stdout
    with wave.open(str(out), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() > 16000 * 0.5, f"only {w.getnframes()} frames of reply"


# --- serve --------------------------------------------------------------------------------------

async def test_serve_on_a_port_in_use_is_one_clear_line():
    """Regression: uvicorn caught the bind error itself and exited 3 after loading every model;
    now the port is taken before the models load and the CLI says what to do."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, _, stderr = await voxline_async("--log-level", "WARNING", "serve", "--port",
                                            str(port))
    assert rc == 1, stderr
    assert_one_error_line(stderr, f"cannot listen on 127.0.0.1:{port}", "in use", "--port")


# --- discord ------------------------------------------------------------------------------------

def test_discord_without_a_token_says_where_to_put_it(monkeypatch):
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.delenv("VOXLINE_DISCORD__TOKEN", raising=False)
    result = voxline("discord", timeout_secs=30)
    assert result.returncode == 1
    assert_one_error_line(result.stderr, "no Discord bot token", "DISCORD_TOKEN")

@pytest.mark.parametrize(("command", "module", "extra"), [
    (["discord"], "discord", "discord"), (["bench", "--short"], "jiwer", "bench")])
def test_a_part_not_installed_says_how_to_install_it(command, module, extra):
    """The Discord bot and the benchmark are extras: without them, one line saying how."""
    hide_and_run = (f"import sys; sys.modules[{module!r}] = None; from voxline.cli import main; "
                    f"sys.exit(main({command!r}))")
    env = {**os.environ, "DISCORD_TOKEN": "not-a-real-token"}
    result = subprocess.run([sys.executable, "-c", hide_and_run], capture_output=True, text=True,
                            timeout=60, env=env, check=False)
    assert result.returncode == 1
    assert_one_error_line(result.stderr, "not installed", f"--with-{extra}",
                          f"voxline[{extra}]")


def test_discord_without_libopus_says_how_to_install_it():
    """discord.py loads libopus on the first voice packet; the bot checks at start-up."""
    hide_opus = ("import ctypes.util, sys; find = ctypes.util.find_library; "
                 "ctypes.util.find_library = lambda name: None if name == 'opus' else find(name); "
                 "from voxline.cli import main; sys.exit(main(['discord']))")
    env = {**os.environ, "DISCORD_TOKEN": "not-a-real-token"}
    result = subprocess.run([sys.executable, "-c", hide_opus], capture_output=True, text=True,
                            timeout=60, env=env, check=False)
    assert result.returncode == 1
    assert_one_error_line(result.stderr, "libopus is not installed", "apt install libopus0")


async def _serve_until_listening(port: int, env: dict) -> asyncio.subprocess.Process:
    """Start `voxline serve` and return once it logs that it listens (its readiness line)."""
    process = await asyncio.create_subprocess_exec(
        str(VOXLINE), "serve", "--port", str(port), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    async with asyncio.timeout(120):
        while line := await process.stderr.readline():
            if b"voxline: listening on" in line:
                return process
    raise AssertionError(f"voxline serve exited ({await process.wait()}) before listening")


async def test_sigterm_during_a_conversation_ends_it_cleanly_and_exits_0_within_5_s(speech):
    """Regression: uvicorn dropped live WebSockets (close 1012) with no word to the client,
    `session.ended` said "client disconnected", and after its clean shutdown uvicorn re-raised
    the SIGTERM, so the process died with status -15 instead of exiting 0."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "VOXLINE_LLM__MODEL": "smollm2-135m"}
    process = await _serve_until_listening(port, env)
    stderr = bytearray()

    async def drain():  # keep reading, or a full pipe would block the server
        assert process.stderr is not None
        while chunk := await process.stderr.read(65536):
            stderr.extend(chunk)

    drainer = asyncio.create_task(drain(), name="test-serve-stderr")
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await start(ws)
            await speak(ws, read_pcm(speech(QUESTION)))  # a live conversation, mid-turn
            process.send_signal(signal.SIGTERM)
            terminated = time.monotonic()
            messages = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(5):
                    while True:
                        if isinstance(message := await ws.recv(), str):
                            messages.append(json.loads(message))
            rc = await asyncio.wait_for(process.wait(), 5 - (time.monotonic() - terminated))
        exit_secs = time.monotonic() - terminated
        await drainer
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        drainer.cancel()
        await asyncio.gather(drainer, return_exceptions=True)
    log = stderr.decode(errors="replace")
    assert rc == 0, log[-3000:]
    assert exit_secs < 5, exit_secs
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000, closed.value
    error = messages[-1]
    assert error["type"] == "error" and error["code"] == "server_shutdown", messages
    assert "(server shutdown) after" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


# --- wyoming ------------------------------------------------------------------------------------

def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_wyoming_serves_home_assistant_and_its_metrics_then_exits_0_on_sigterm():
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info

    port, metrics_port = _free_port(), _free_port()
    env = {**os.environ, "VOXLINE_LLM__MODEL": "smollm2-135m"}
    process = await asyncio.create_subprocess_exec(
        str(VOXLINE), "wyoming", "--port", str(port), "--metrics-port", str(metrics_port),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    log = bytearray()
    try:
        async with asyncio.timeout(120):
            while b"listening on http" not in log:
                line = await process.stderr.readline()
                assert line, f"voxline wyoming exited early:\n{log.decode()[-3000:]}"
                log += line
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Describe().event())
            info = Info.from_event(await asyncio.wait_for(client.read_event(), 30))
        assert info.asr[0].models[0].name == "whisper-tiny.en"
        metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/metrics")
        assert 'voxline_sessions_started_total{transport="wyoming"} 1.0' in metrics
        process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(process.stderr.read(), 10)
        rc = await asyncio.wait_for(process.wait(), 5)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = (log + rest).decode(errors="replace")
    assert rc == 0, output[-3000:]
    assert f"Wyoming listening on tcp://127.0.0.1:{port}" in output
    assert "Traceback" not in output, output[-3000:]
