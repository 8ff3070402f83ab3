"""Chat-platform bots that run the same pipeline as the browser (Discord voice)."""
