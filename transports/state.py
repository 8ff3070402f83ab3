"""What every request handler of one worker shares."""

import time
from dataclasses import dataclass, field

from voxline.agent import Persona, SessionRegistry
from voxline.auth import AccessGuard, KeyStore
from voxline.bus import EventBus
from voxline.config.settings import VoxlineSettings
from voxline.models import ModelSet


@dataclass
class AppState:
    """The worker's settings, loaded models, bus, access rule and live-session count.
    `keys` is the API key store when keys are required (None: they are off)."""

    settings: VoxlineSettings
    models: ModelSet
    bus: EventBus
    persona: Persona
    worker_id: str
    active_sessions: int = 0
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    started_at: float = field(default_factory=time.monotonic)
    access: AccessGuard = field(default_factory=AccessGuard)
    keys: KeyStore | None = None
