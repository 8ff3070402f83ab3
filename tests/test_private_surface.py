"""Every private name voxline uses in the libraries it builds on, in one place.

Where no public seam does the job, the code reaches into pipecat, llama-cpp-python, discord.py,
aioice and uvicorn internals. An upgrade that renames or reshapes one of them fails here, with
the name and the module of ours that needs it, instead of misbehaving at run time. Add a line
here whenever new code uses a private name; remove it when the code stops.
"""

import inspect
import re

import pytest


def _assigned(cls: type, attribute: str) -> bool:
    """Some class in `cls`'s MRO sets `self.<attribute>` in its code."""
    pattern = re.compile(rf"self\.{re.escape(attribute)}\s*(:[^=]*)?=[^=]")
    for klass in cls.__mro__:
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if pattern.search(source):
            return True
    return False


def _parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def _pipecat():
    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
    from pipecat.audio.vad.vad_analyzer import VADAnalyzer
    from pipecat.services.llm_service import LLMService
    from pipecat.services.openai.base_llm import BaseOpenAILLMService
    from pipecat.services.stt_service import SegmentedSTTService
    from pipecat.services.tts_service import TTSService
    from pipecat.transports.base_output import BaseOutputTransport
    from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

    return [
        # (our module, what it uses, does it still hold)
        ("pipeline/stt.py", "SegmentedSTTService._audio_buffer (bytearray of the utterance)",
         lambda: _assigned(SegmentedSTTService, "_audio_buffer")),
        ("pipeline/stt.py", "SegmentedSTTService._handle_user_stopped_speaking(frame)",
         lambda: _parameters(SegmentedSTTService._handle_user_stopped_speaking)
         == ["self", "frame"]),
        ("pipeline/vad.py", "VADAnalyzer._run_analyzer(buffer), _vad_stopping_count, _vad_frames",
         lambda: _parameters(VADAnalyzer._run_analyzer) == ["self", "buffer"]
         and _assigned(VADAnalyzer, "_vad_stopping_count")
         and _assigned(VADAnalyzer, "_vad_frames")),
        # Not LLMTextProcessor(text_aggregator=...): it aggregates in its own task, ahead of
        # synthesis, and our aggregator's cut decision needs the audio lead as it stands once
        # every piece it gave is synthesized, which only holds inside the TTS's own loop.
        ("pipeline/tts.py", "TTSService._text_aggregator, _text_aggregation_mode (replaced)",
         lambda: _assigned(TTSService, "_text_aggregator")
         and _assigned(TTSService, "_text_aggregation_mode")),
        ("pipeline/tts.py", "TTSService._stream_audio_frames_from_iterator(iterator, "
         "in_sample_rate, context_id)",
         lambda: {"in_sample_rate", "context_id"}
         <= set(_parameters(TTSService._stream_audio_frames_from_iterator))),
        ("pipeline/text_aggregation.py", "SimpleTextAggregator._check_sentence_with_lookahead",
         lambda: callable(getattr(SimpleTextAggregator, "_check_sentence_with_lookahead", None))),
        ("pipeline/llm.py, pipeline/remote_llm.py", "LLMService._push_llm_text(text)",
         lambda: _parameters(LLMService._push_llm_text)[:2] == ["self", "text"]),
        ("pipeline/remote_llm.py", "BaseOpenAILLMService._process_context(context)",
         lambda: _parameters(BaseOpenAILLMService._process_context)[:2] == ["self", "context"]),
        ("pipeline/playback_hold.py", "MediaSender._internal_write_audio_frame calls the "
         "transport's write_audio_frame for every chunk",
         lambda: "self._transport.write_audio_frame(frame)"
         in inspect.getsource(BaseOutputTransport.MediaSender._internal_write_audio_frame)),
        ("models/smart_turn.py", "LocalSmartTurnAnalyzerV3._predict_endpoint(audio) → "
         "{prediction, probability}",
         lambda: '"prediction"' in inspect.getsource(LocalSmartTurnAnalyzerV3._predict_endpoint)
         and '"probability"' in inspect.getsource(LocalSmartTurnAnalyzerV3._predict_endpoint)),
    ]


def _others():
    import aioice.ice
    import uvicorn
    from discord.gateway import DiscordVoiceWebSocket
    from discord.voice_state import ConnectionFlowState, VoiceConnectionState
    from llama_cpp import _internals
    from llama_cpp._logger import set_verbose

    return [
        ("models/llama.py, models/llama_batch.py, models/llama_request.py",
         "llama_cpp._internals: LlamaModel, LlamaContext, LlamaBatch, LlamaSampler",
         lambda: all(hasattr(_internals, n)
                     for n in ("LlamaModel", "LlamaContext", "LlamaBatch", "LlamaSampler"))),
        ("models/llama.py", "llama_cpp._logger.set_verbose(bool)", lambda: callable(set_verbose)),
        ("bots/discord/voice_client.py", "discord.voice_state.VoiceConnectionState(client, "
         "hook=...) and its secret_key, mode, dave_session, dave_protocol_version, "
         "dave_downgraded",
         lambda: "hook" in _parameters(VoiceConnectionState.__init__)
         and all(_assigned(VoiceConnectionState, n)
                 for n in ("secret_key", "mode", "dave_session", "dave_protocol_version",
                           "dave_downgraded"))),
        ("bots/discord/voice_client.py", "VoiceConnectionState._runner (the voice poller "
         "task) and ws; DiscordVoiceWebSocket.ws (aiohttp socket: close_code)",
         lambda: _assigned(VoiceConnectionState, "_runner")
         and _assigned(VoiceConnectionState, "ws")
         and _assigned(DiscordVoiceWebSocket, "ws")),
        ("bots/discord/voice_client.py", "VoiceConnectionState._recover_from_invalid_commit("
         "transition_id) (op 31, then a new key package); DiscordVoiceWebSocket.secret_key "
         "(set on an op-9 resume)",
         lambda: _parameters(VoiceConnectionState._recover_from_invalid_commit)
         == ["self", "transition_id"] and _assigned(DiscordVoiceWebSocket, "secret_key")),
        ("bots/discord/voice_client.py", "VoiceConnectionState._voice_connect(*, self_deaf, "
         "self_mute), voice_state_update(data), voice_server_update(data), the `state` setter "
         "and ConnectionFlowState.connected/got_voice_server_update/got_both_voice_updates",
         lambda: _parameters(VoiceConnectionState._voice_connect)
         == ["self", "self_deaf", "self_mute"]
         and _parameters(VoiceConnectionState.voice_state_update) == ["self", "data"]
         and _parameters(VoiceConnectionState.voice_server_update) == ["self", "data"]
         and VoiceConnectionState.state.fset is not None
         and all(hasattr(ConnectionFlowState, n) for n in (
             "connected", "got_voice_server_update", "got_both_voice_updates"))),
        ("transports/webrtc.py", "aioice.ice.get_host_addresses(use_ipv4, use_ipv6) (replaced "
         "process-wide)",
         lambda: _parameters(aioice.ice.get_host_addresses) == ["use_ipv4", "use_ipv6"]),
        ("voxline/server.py", "uvicorn.Server._captured_signals (list of signals)",
         lambda: _assigned(uvicorn.Server, "_captured_signals")),
    ]


@pytest.mark.parametrize("library", [_pipecat, _others], ids=["pipecat", "others"])
def test_every_private_name_we_use_still_exists(library):
    broken = [f"{user}: {name}" for user, name, holds in library() if not holds()]
    assert not broken, ("a library changed a private name voxline uses; update these "
                        "modules:\n" + "\n".join(broken))
