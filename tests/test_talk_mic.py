"""`voxline talk --mic`: the live conversation loop, driven through a wav spoken into a simulated
room (headphones, or a speaker that leaks into the microphone) against the real server; the
PortAudio devices; the errors a user without a sound card sees; the command line."""

import asyncio
import ctypes.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import websockets

from tests.helpers import read_pcm, words
from tests.test_cli import assert_one_error_line
from voxline import cli
from voxline.audio_devices import DeviceError, WavRoomDevice, import_sounddevice, parse_device
from voxline.room import SAMPLE_RATE, LeakyRoom, Room
from voxline.talk import TalkError, talk_live

QUESTIONS = ("What is the capital of France?", "What color is the sky?")
STORY = "Please tell me a short story about a dog."
VOXLINE = Path(sys.executable).parent / "voxline"
TALK_TIMEOUT_SECS = 60  # two turns on 2 shared cores, with the other tests' sessions around


def _replies(result) -> list[dict]:
    return [e for e in result.events if e["type"] == "bot.reply"]


def _assert_every_reply_played_whole(result, mic: WavRoomDevice) -> None:
    """No `interrupted`, every reply complete, and the room's speaker played every sample the
    server sent, none dropped, nothing left queued."""
    assert not [e for e in result.events if e["type"] == "interrupted"], result.events
    assert all(not r["interrupted"] and r["text"].strip() for r in _replies(result)), result.events
    assert mic.dropped_samples == 0
    assert mic.room.played_samples == len(result.reply_pcm) // 2
    assert mic.queued_secs == 0


async def test_with_headphones_each_question_gets_a_transcript_and_a_spoken_reply(server,
                                                                                 speech):
    mic = WavRoomDevice(LeakyRoom(None))  # headphones: nothing leaks
    mic.say(read_pcm(speech(QUESTIONS[0])))
    asked: list[int] = []

    def ask_the_next_question(answered: int) -> None:
        asked.append(answered)
        if answered < len(QUESTIONS):
            mic.say(read_pcm(speech(QUESTIONS[answered])))

    lines: list[str] = []
    async with asyncio.timeout(TALK_TIMEOUT_SECS):
        result = await talk_live(url=server.ws_url, device=mic, enable_echo_cancellation=False,
                                 turns=len(QUESTIONS), on_answered=ask_the_next_question,
                                 printer=lines.append)

    assert asked == [1, 2]
    finals = result.texts("transcript.final")
    assert len(finals) == 2, result.events
    assert {"capital", "france"} <= words(finals[0]), finals
    assert "sky" in words(finals[1]), finals
    assert len(_replies(result)) == 2
    assert [e["turn"] for e in result.events if e["type"] == "turn.metrics"] == [1, 2]
    assert mic.room.played_samples > 2 * 0.5 * SAMPLE_RATE  # at least half a second a reply
    _assert_every_reply_played_whole(result, mic)
    # Printed as `voxline talk --wav` prints: transcripts, the bot's words, the latency.
    assert f"transcript.final: {finals[0]}" in lines
    assert any(line.startswith("latency: vad ") and "total " in line for line in lines), lines
    assert any(line.startswith("bot.text: ") for line in lines), lines


async def test_in_a_leaking_room_the_bot_is_not_interrupted_by_its_own_echo(server, speech):
    """A laptop without headphones: the speaker comes back into the microphone 60 ms later,
    12 dB quieter, with two reflections. With echo cancellation the server must not take the
    bot's own voice for the user barging in: the reply plays to its end.

    A story, because a one-sentence reply (about 2 s) outlasted its echo even without echo
    cancellation, while a story (about 8 s) was interrupted by it after a few seconds."""
    mic = WavRoomDevice(LeakyRoom(Room(delay_secs=0.06, gain_db=-12.0,
                                       reflections=((0.017, -6.0), (0.043, -11.0)))))
    mic.say(read_pcm(speech(STORY)))
    async with asyncio.timeout(TALK_TIMEOUT_SECS):
        result = await talk_live(url=server.ws_url, device=mic, turns=1, printer=lambda _: None)
    assert "story" in words(result.texts("transcript.final")[0]), result.events
    assert len(_replies(result)) == 1, result.events
    _assert_every_reply_played_whole(result, mic)
    assert mic.room.played_samples > 4 * SAMPLE_RATE  # long enough for the echo to matter


async def test_a_server_without_echo_cancellation_gets_told_to_update():
    """A server from before echo cancellation refuses the unknown start field: the user reads
    what to do, not a traceback."""
    starts: list[dict] = []

    async def old_server(ws):
        starts.append(json.loads(await ws.recv()))
        await ws.send(json.dumps({"type": "error", "code": "bad_start", "message":
                                  "start message: echo_cancellation: Extra inputs are not "
                                  "permitted"}))
        await ws.wait_closed()

    async with websockets.serve(old_server, "127.0.0.1", 0) as listening:
        port = listening.sockets[0].getsockname()[1]
        with pytest.raises(TalkError) as refused:
            await talk_live(url=f"ws://127.0.0.1:{port}/ws", device=WavRoomDevice(LeakyRoom(None)),
                            printer=lambda _: None)
    assert starts == [{"type": "start", "sample_rate": 16000, "echo_cancellation": True}]
    message = str(refused.value)
    assert "update the server" in message and "--no-echo-cancellation" in message, message
    assert "Extra inputs are not permitted" in message


# --- devices ------------------------------------------------------------------------------------

# PortAudio as on a machine without a sound card, whatever this one has; then `voxline` itself.
WITHOUT_SOUND_CARD = textwrap.dedent("""
    import sys
    import sounddevice as sd
    from voxline.cli import main

    def query_devices(device=None, kind=None):
        if device is None and kind is None:
            return sd.DeviceList()
        raise sd.PortAudioError(f"Error querying device {-1 if device is None else device}")

    sd.query_devices = query_devices
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("argv, fragments", [
    (["talk", "--mic"], ["no input device found", "plug in a microphone", "--input-device"]),
    (["talk", "--mic", "--input-device", "3"], ["input device 3 not found", "--list-devices"]),
    (["talk", "--list-devices"], ["no audio devices found", "plug in a microphone"]),
])
def test_without_a_sound_card_the_error_names_what_is_missing(argv, fragments):
    result = subprocess.run([sys.executable, "-c", WITHOUT_SOUND_CARD, *argv],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    assert_one_error_line(result.stderr, *fragments)
    assert result.stdout == ""


def test_without_portaudio_the_error_names_the_apt_package(monkeypatch):
    # sounddevice raises OSError when ctypes cannot find libportaudio: import it afresh so.
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(DeviceError) as missing:
        import_sounddevice()
    assert "PortAudio library not found" in str(missing.value)
    assert "sudo apt-get install libportaudio2" in str(missing.value)


# ALSA's null plugin as the default device: real PortAudio streams without a sound card (the
# capture runs faster than real time; playback goes nowhere).
NULL_ALSA = 'pcm.!default { type plug slave.pcm "null" }\n'


def _with_null_alsa(tmp_path, *command: str) -> subprocess.CompletedProcess:
    (tmp_path / ".asoundrc").write_text(NULL_ALSA)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False,
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})


@pytest.mark.skipif(sys.platform != "linux", reason="ALSA's null device is Linux only")
def test_list_devices_prints_each_device_with_its_channels(tmp_path):
    result = _with_null_alsa(tmp_path, str(VOXLINE), "talk", "--list-devices")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["#", "name", "host", "API", "in", "out", "rate"]
    default = next(row for row in rows if " default " in row)
    # Marked as the default input and output, with its host API and channel counts.
    assert default.startswith("><") and default.split()[2:4] == ["default", "ALSA"], default


@pytest.mark.skipif(sys.platform != "linux", reason="ALSA's null device is Linux only")
def test_the_sound_device_captures_20_ms_frames_and_plays_through_portaudio(tmp_path):
    script = textwrap.dedent("""
        import asyncio
        from voxline.audio_devices import SoundDevice

        async def main():
            device = SoundDevice()
            device.open(sample_rate=16000, output_sample_rate=16000)
            try:
                frame = await asyncio.wait_for(device.read(), 5)
                device.play(bytes(16000 * 2))  # 1 s of bot audio
                queued = device.queued_secs
                device.clear()
                print(len(frame), queued, device.queued_secs)
            finally:
                device.close()
            device.close()

        asyncio.run(main())
    """)
    result = _with_null_alsa(tmp_path, sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    frame_bytes, queued, after_clear = result.stdout.split()
    assert int(frame_bytes) == 640  # 20 ms of 16-bit mono at 16 kHz
    assert 0.9 < float(queued) <= 1.0 and float(after_clear) == 0.0


# --- command line -------------------------------------------------------------------------------

def test_mic_options_parse_into_devices_and_the_echo_cancellation_flag():
    args = cli._parser().parse_args(["talk", "--mic", "--input-device", "2", "--output-device",
                                     "USB Audio", "--no-echo-cancellation"])
    assert args.mic and args.wav is None and not args.list_devices
    assert (parse_device(args.input_device), parse_device(args.output_device)) == (2, "USB Audio")
    assert args.enable_echo_cancellation is False
    assert cli._parser().parse_args(["talk", "--mic"]).enable_echo_cancellation is True
    assert parse_device(None) is None


@pytest.mark.parametrize("argv, expected", [
    (["talk"], "one of the arguments --wav --mic --list-devices is required"),
    (["talk", "--mic", "--wav", "q.wav"], "not allowed with argument"),
])
def test_talk_needs_exactly_one_source(capsys, argv, expected):
    with pytest.raises(SystemExit) as exited:
        cli._parser().parse_args(argv)
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def test_out_with_mic_is_refused_with_the_reason():
    result = subprocess.run([str(VOXLINE), "talk", "--mic", "--out", "reply.wav"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert_one_error_line(result.stderr, "--out saves the reply to a --wav question")
