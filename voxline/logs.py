"""Logging set-up for the entry point: loguru everywhere, stdlib loggers routed into it."""

import logging
import re
import sys

from loguru import logger


class _InterceptHandler(logging.Handler):
    """Sends records of stdlib loggers (uvicorn, onnxruntime, ...) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level,
                                                           redact_secrets(record.getMessage()))


# An API key keeps its public id (vxl_live_ + 8 hex) and loses its secret; any `token=` query
# value (a key, the dashboard token) is hidden whole. uvicorn logs WebSocket paths with queries.
_SECRETS = (
    (re.compile(r"(vxl_live_[0-9a-f]{0,8})[A-Za-z0-9_-]*"), r"\1…"),
    (re.compile(r"([?&]token=)[^&\s\"']*", re.IGNORECASE), r"\1***"),
)


def redact_secrets(text: str) -> str:
    """`text` without API keys or `token=` values: for every message a third party logs."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _redact_record(record) -> None:
    record["message"] = redact_secrets(record["message"])


# Messages that say nothing actionable about our set-up, with the reason they are dropped.
_NOISE = (
    # Our VAD stop window is longer than pipecat's 0.2 s default on purpose (vad.stop_secs).
    "differs from the recommended default",
    # faster-whisper logs every clip it decodes at INFO.
    "Processing audio with duration",
)


def _not_noise(record) -> bool:
    return not any(fragment in record["message"] for fragment in _NOISE)


def configure_logging(level: str = "INFO") -> None:
    """Once, in the CLI: one sink on stderr, with the session id when a session logs."""
    logger.remove()
    logger.configure(extra={"session_id": "-"}, patcher=_redact_record)
    logger.add(
        sys.stderr,
        filter=_not_noise,
        level=level.upper(),
        format="<green>{time:HH:mm:ss.SSS}</green> {level: <7} [{extra[session_id]}] {message}",
    )
    # Stdlib records below the level are not even created: uvicorn, for one, wraps the app in
    # a logger of every WebSocket message (each 20 ms of audio) when its level allows TRACE.
    std_level = logger.level(level.upper()).no  # the same numbers as logging's levels
    logging.basicConfig(handlers=[_InterceptHandler()], level=std_level, force=True)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = [_InterceptHandler()]
        logging.getLogger(name).propagate = False
        logging.getLogger(name).setLevel(std_level)
