"""Logging set-up for the entry point: loguru everywhere, stdlib loggers routed into it."""

import logging
import sys

from loguru import logger


class _InterceptHandler(logging.Handler):
    """Sends records of stdlib loggers (uvicorn, onnxruntime, ...) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


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
    logger.configure(extra={"session_id": "-"})
    logger.add(
        sys.stderr,
        filter=_not_noise,
        level=level.upper(),
        format="<green>{time:HH:mm:ss.SSS}</green> {level: <7} [{extra[session_id]}] {message}",
    )
    logging.basicConfig(handlers=[_InterceptHandler()], level=0, force=True)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = [_InterceptHandler()]
        logging.getLogger(name).propagate = False
