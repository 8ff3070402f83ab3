"""`voxline bench` in CI's short mode: every field filled with plausible values (figures are
not asserted here; they belong to the benchmark's own report). The short run includes the
`--webrtc` browser session, which runs alongside the WebSocket session (no extra server start),
and the same sessions over /v1/realtime (`--protocol realtime`)."""

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.helpers import read_pcm
from voxline.bench import webrtc_client
from voxline.bench.client import TurnResult, time_audio
from voxline.bench.prompts import Prompt, PromptError, manifest_prompts, pick_prompts, speech_end
from voxline.bench.runner import BenchOptions, _webrtc_session


@pytest.fixture(scope="module")
async def bench_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    voxline = Path(sys.executable).parent / "voxline"
    process = await asyncio.create_subprocess_exec(
        str(voxline), "--log-level", "INFO", "bench", "--turns", "3", "--llm", "smollm2-135m",
        "--prompts", "capital,dragon,book",
        "--baseline", "pipecat", "--webrtc", "--protocol", "realtime",
        "--json", str(folder / "bench.json"),
        "--plot", str(folder / "bench.html"), "--server-logs", str(folder / "logs"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode == 0, err.decode()[-2000:]
    return json.loads((folder / "bench.json").read_text()), out.decode(), folder


def _log_tail(folder: Path, name: str) -> str:
    """The end of a bench server's log (--server-logs): what a failed run's server said."""
    log = folder / "logs" / f"{name}.log"
    return log.read_text()[-6000:] if log.exists() else f"no {log}"


async def test_json_has_every_figure(bench_report):
    report, _, folder = bench_report
    for name in ("voxline", "baseline"):
        result = report[name]
        assert result["turns"] == 3 and result["answered"] == 3, (
            name, result["errors"], _log_tail(folder, name))
        for q in ("p50", "p95", "max"):
            assert 0 < result["v2v_secs"][q] < 15
        assert 0 <= result["stt_wer"] <= 1
        assert result["resources"]["rss_peak_bytes"] > 50 * 2**20
        assert result["resources"]["cpu_percent_mean"] > 0
        for turn in result["per_turn"]:
            assert turn["transcript"] and turn["v2v_secs"] > 0
        assert [turn["prompt_id"] for turn in result["per_turn"]] == [
            "capital", "dragon", "book"]  # --prompts: these, in this order
    voxline_stages = report["voxline"]["stages"]
    for stage in ("stt_secs", "llm_secs", "tts_secs", "total_secs"):
        assert voxline_stages[stage]["p50"] > 0, stage
    assert report["ratio"]["v2v_p50"] > 0 and report["ratio"]["v2v_p95"] > 0
    assert 0 <= report["stt_whole_clip_wer"] <= 1


async def test_webrtc_session_has_its_own_block(bench_report):
    report, _, _ = bench_report
    webrtc = report["voxline"]["webrtc"]
    assert webrtc["error"] == "", webrtc["error"]
    assert webrtc["turns"] == 3 and webrtc["answered"] >= 1, webrtc["errors"]
    assert webrtc["v2v_secs"]["p50"] > 0 and webrtc["v2v_secs"]["max"] > 0
    assert 0 <= webrtc["stt_wer"] <= 1 and webrtc["underruns"] >= 0
    assert webrtc["stages"]["total_secs"]["p50"] > 0
    answered = [t for t in webrtc["per_turn"] if t["v2v_secs"] is not None]
    for turn in answered:
        assert turn["transcript"] and turn["reply"] and turn["bot_audio_secs"] > 0, turn
        assert turn["session"] == 1  # after the WebSocket session 0: distinguishable
    assert all(t["session"] == 0 for t in report["voxline"]["per_turn"])


async def test_realtime_sessions_have_their_own_block(bench_report):
    """--protocol realtime: the same prompts over /v1/realtime, timed the same way."""
    report, printed, _ = bench_report
    realtime = report["voxline"]["realtime"]
    assert realtime["turns"] == 3 and realtime["answered"] == 3, realtime["errors"]
    assert realtime["v2v_secs"]["p50"] > 0
    for turn in realtime["per_turn"]:
        assert turn["transcript"] and turn["reply"] and turn["bot_audio_secs"] > 0, turn
    assert "realtime minus /ws, p50" in printed


async def test_table_and_plot_are_written(bench_report):
    _, printed, folder = bench_report
    assert "voice-to-voice" in printed and "faster at p50" in printed
    assert "webrtc (1 browser session)" in printed
    html = (folder / "bench.html").read_text()
    assert html.count("<rect") >= 6 * 3 and "<circle" in html
    assert "over WebRTC" in html


async def test_each_servers_log_is_kept(bench_report):
    """--server-logs: the voxline server's log at the bench's level, the baseline's too."""
    _, _, folder = bench_report
    assert "voxline: models ready" in (folder / "logs" / "voxline.log").read_text()
    assert (folder / "logs" / "baseline.log").exists()


def test_http_origin_from_the_ws_url():
    assert webrtc_client.http_origin("ws://127.0.0.1:8000/ws") == "http://127.0.0.1:8000"
    assert webrtc_client.http_origin("wss://voice.example:443/ws") == "https://voice.example:443"


async def test_missing_chromium_is_recorded_not_raised(monkeypatch, tmp_path):
    """Without Chromium the WebRTC block carries an error naming the fix; the WebSocket
    sessions are reported as usual."""
    monkeypatch.setattr(webrtc_client, "CHROMIUM", str(tmp_path / "no-chromium"))
    block = await _webrtc_session("ws://127.0.0.1:9/ws", [], BenchOptions(turns=1))
    assert "apt-get install chromium" in block["error"]
    assert block["turns"] == 0 and block["answered"] == 0


async def test_missing_playwright_is_recorded_not_raised(monkeypatch):
    monkeypatch.setitem(sys.modules, "playwright.async_api", None)  # import fails
    block = await _webrtc_session("ws://127.0.0.1:9/ws", [], BenchOptions(turns=1))
    assert "pip install playwright" in block["error"]
    assert "playwright install`" in block["error"]  # ... and warns against the browser download


def test_table_names_a_webrtc_session_that_could_not_run():
    from voxline.bench.report import table
    from voxline.bench.runner import summarise

    voxline = {**summarise([]), "webrtc": {**summarise([]), "error": "no Chromium here"}}
    printed = table({"prompts": 8, "voxline": voxline, "stt_whole_clip_wer": None})
    assert "webrtc (1 browser session) — not run: no Chromium here" in printed


def test_speech_end_is_found_in_a_padded_clip(speech):
    pcm = read_pcm(speech("What is the capital of France?"))
    padded = pcm + bytes(16000 * 2)  # one second of silence after
    assert abs(speech_end(padded) - speech_end(pcm)) < 0.05
    assert 1.0 < speech_end(padded) < len(pcm) / 32000 + 0.05


def test_voice_to_voice_and_underruns_from_arrival_times():
    result = TurnResult(0, 0, "p", "ref")
    # (arrival, seconds of audio, audible): silence first, then speech at t=11.0 for 1 s
    # delivered 0.5 s at a time, then a gap that leaves the player dry for 0.5 s.
    audio = [(10.2, 0.1, False), (11.0, 0.5, True), (11.2, 0.5, True), (12.5, 0.5, True)]
    time_audio(audio, speech_end=10.0, result=result)
    assert result.v2v_secs == pytest.approx(1.0)
    assert result.underruns == 1 and result.bot_audio_secs == pytest.approx(1.5)
    assert result.underrun_secs == pytest.approx(0.5)


def test_playback_resumes_after_a_gap_and_each_gap_counts():
    """After running dry the player plays on from the late piece: audio arriving in real
    time after a gap is not late, a second gap is a second underrun."""
    result = TurnResult(0, 0, "p", "ref")
    audio = [(1.0, 0.5, True), (2.0, 0.5, True), (2.5, 0.5, True), (3.0, 0.5, True),
             (4.0, 0.5, True)]
    time_audio(audio, speech_end=0.5, result=result)
    assert result.underruns == 2 and result.underrun_secs == pytest.approx(1.0)
    # Where they fell: after 0.5 s of the reply's audio, then after 2.0 s, 0.5 s each.
    assert result.gaps == [[0.5, 0.5], [2.0, 0.5]]


def _prompt(prompt_id: str) -> Prompt:
    return Prompt(prompt_id, f"text of {prompt_id}", bytes(3200), 0.1)


def test_picked_prompts_come_in_the_order_named_and_may_repeat():
    prompts = [_prompt("capital"), _prompt("book"), _prompt("dragon")]
    picked = pick_prompts(prompts, ["dragon", "capital", "dragon"])
    assert [p.id for p in picked] == ["dragon", "capital", "dragon"]


def test_an_unknown_prompt_id_names_the_prompts_there_are():
    with pytest.raises(PromptError, match=r"no prompt named dargon, x; the prompts are: "
                                          r"capital, book"):
        pick_prompts([_prompt("capital"), _prompt("book")], ["dargon", "capital", "x"])


def test_manifest_errors_name_the_line(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "wav": "a.wav"}\n')
    with pytest.raises(PromptError, match=r"m.jsonl:1"):
        manifest_prompts(manifest)


async def test_short_soak_leaves_no_tasks_and_bounded_rss(tmp_path):
    """CI's bounded soak: 4 sessions for 1 minute of back-to-back rounds; after the last round
    the idle server has no more tasks than before the first, and RSS growth stays bounded.

    Measured on 2 cores: +10–15 % from the end of round 1 to round 3 (the allocator still
    settling; see the issue note for the 3-minute curve), hence the 30 % bound."""
    voxline = Path(sys.executable).parent / "voxline"
    process = await asyncio.create_subprocess_exec(
        str(voxline), "--log-level", "WARNING", "bench", "--sessions", "4", "--turns", "1",
        "--soak", "1", "--llm", "smollm2-135m", "--json", str(tmp_path / "soak.json"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 400)
    assert process.returncode == 0, err.decode()[-2000:]
    result = json.loads((tmp_path / "soak.json").read_text())["voxline"]
    soak = result["soak"]
    assert soak["rounds"] >= 2, soak
    assert all(sample["sessions"] == 0 for sample in soak["samples"]), soak["samples"]
    assert soak["tasks_growth"] == 0, soak["samples"]
    assert soak["rss_growth_percent"] < 30, soak["samples"]
    assert result["answered"] >= 0.75 * result["turns"], result["errors"]
    assert "soak:" in out.decode()
