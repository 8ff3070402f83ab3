"""Settings: one pydantic-settings model, a commented default YAML, env overrides (VOXLINE_...)."""

from voxline.config.loading import ConfigError, load_settings
from voxline.config.settings import VoxlineSettings

__all__ = ["ConfigError", "VoxlineSettings", "load_settings"]
