"""`/metrics` in Prometheus format, counting real turns."""

import asyncio
import urllib.request

from voxline.talk import talk


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/plain")
        return response.read().decode()


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_a_turn_shows_up_in_the_metrics(server, speech):
    before = await asyncio.to_thread(_metrics, server.http_url)
    await talk(url=server.ws_url, wav=speech("What is the capital of France?"), out=None,
               timeout_secs=60, printer=lambda line: None)
    expected = _value(before, "voxline_turns_total") + 1
    for _ in range(100):  # the metrics follow the bus, off the voice path: poll, bounded
        after = await asyncio.to_thread(_metrics, server.http_url)
        if _value(after, "voxline_turns_total") >= expected:
            break
        await asyncio.sleep(0.05)
    assert _value(after, "voxline_turns_total") == expected
    for name in ("voxline_stt_seconds_count", "voxline_llm_first_token_seconds_count",
                 "voxline_tts_first_audio_seconds_count"):
        assert _value(after, name) >= 1, name
    assert 'voxline_turn_latency_seconds_bucket{le="+Inf",stage="total"}' in after
    assert "voxline_sessions_active" in after and "voxline_bus_dropped_total" in after
    assert "# TYPE voxline_bus_dropped_total counter" in after  # a count that only grows
    # Whisper's final decode and the reply's first words took the CPU as urgent work.
    assert _value(after, 'voxline_compute_turns_total{work="user_waiting"}') >= 2
    assert _value(after, 'voxline_compute_busy_seconds_total{work="user_waiting"}') > 0
    assert 'voxline_compute_wait_seconds_total{work="speculative"}' in after
