"""`voxline bench`: voice-to-voice latency, stage times, WER and resource use, measured from
real clients against a real server (ours, and optionally a stock pipecat baseline)."""
