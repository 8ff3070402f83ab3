"""`voxline bench --speech-endpoints`, short: both servers started, every figure measured."""

import pytest

from voxline.bench.speech_endpoints import (
    FORMATS,
    SpeechEndpointsOptions,
    run_speech_endpoints,
    speech_endpoints_table,
)

pytestmark = pytest.mark.slow


async def test_the_short_run_measures_every_endpoint():
    report = await run_speech_endpoints(SpeechEndpointsOptions(short=True,
                                                               llm_model="smollm2-135m"))
    for fmt in FORMATS:
        speech = report["speech"][fmt]
        assert len(speech["first_bytes_secs"]) == 2
        assert all(0 < first <= whole for first, whole in
                   zip(speech["first_bytes_secs"], speech["whole_secs"], strict=True))
    for name in ("transcriptions", "wyoming"):
        assert len(report[name]["secs"]) == 2 and all(s > 0 for s in report[name]["secs"])
        assert max(report[name]["wer"]) <= 0.5, report[name]
    table = speech_endpoints_table(report)
    assert "first bytes" in table and "wyoming" in table
