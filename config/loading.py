"""Build `VoxlineSettings` from a YAML file plus the environment, failing in one clear line."""

from pathlib import Path

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, YamlConfigSettingsSource

from voxline.config.settings import VoxlineSettings

DEFAULT_CONFIG_FILE = Path(__file__).with_name("default.yaml")


class ConfigError(ValueError):
    """Invalid configuration; the message is one line naming the key, the value and the fix."""


def load_settings(config_file: Path | None = None, **overrides) -> VoxlineSettings:
    """Load settings once, at the entry point. `overrides` (e.g. from CLI flags) win over all."""
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigError(f"config file '{config_file}' not found; pass an existing YAML file")
    settings_cls = _with_yaml_file(config_file)
    try:
        return settings_cls(**overrides)
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file '{config_file}' is not valid YAML: {e}") from None


def _with_yaml_file(config_file: Path | None) -> type[VoxlineSettings]:
    """A settings class that also reads `config_file` (below env vars, above defaults)."""

    class _FileSettings(VoxlineSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources = [init_settings, env_settings]
            if config_file is not None:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
            return tuple(sources)

    _FileSettings.__name__ = VoxlineSettings.__name__
    return _FileSettings


def _describe(error: ValidationError) -> str:
    """First validation error as one line: key, bad value, reason and where to set it."""
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "settings"
    env_name = "VOXLINE_" + "__".join(str(p).upper() for p in first["loc"])
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" = {value!r}"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    reason = first["msg"].removeprefix("Value error, ")
    return (
        f"invalid setting {key}{shown}: {reason}{more}; "
        f"fix it in the config file or env var {env_name}"
    )
