"""voxline: an offline, real-time voice agent built on pipecat."""

__version__ = "0.1.0"
