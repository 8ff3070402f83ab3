"""One conversation: `run_session` assembles and runs the pipeline for any transport."""

from voxline.agent.persona import Persona
from voxline.agent.services import llm_breaker
from voxline.agent.session import Session, SessionOptions, run_session
from voxline.pipeline.circuit_breaker import CircuitBreaker

__all__ = ["CircuitBreaker", "Persona", "Session", "SessionOptions", "llm_breaker", "run_session"]
