"""What every request handler of one worker shares."""

from dataclasses import dataclass

from voxline.agent.persona import Persona
from voxline.bus import EventBus
from voxline.config.settings import VoxlineSettings
from voxline.models import ModelSet


@dataclass
class AppState:
    """The worker's settings, loaded models, bus and live-session count."""

    settings: VoxlineSettings
    models: ModelSet
    bus: EventBus
    persona: Persona
    worker_id: str
    active_sessions: int = 0
