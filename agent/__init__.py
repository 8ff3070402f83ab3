"""One conversation: `run_session` assembles and runs the pipeline for any transport."""

from voxline.agent.persona import Persona
from voxline.agent.registry import SessionRegistry
from voxline.agent.session import SessionOptions, run_session

__all__ = ["Persona", "SessionOptions", "SessionRegistry", "run_session"]
