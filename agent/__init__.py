"""One conversation: `run_session` assembles and runs the pipeline for any transport."""

from voxline.agent.persona import Persona
from voxline.agent.registry import SessionRegistry
from voxline.agent.services import llm_breaker
from voxline.agent.session import SessionOptions, run_session
from voxline.pipeline.circuit_breaker import CircuitBreaker

__all__ = ["CircuitBreaker", "Persona", "SessionOptions", "SessionRegistry", "llm_breaker",
           "run_session"]
