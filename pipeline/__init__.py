"""Our pipecat frame processors: streaming STT, local LLM, TTS glue, session events, turn timing."""
