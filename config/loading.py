"""Build `VoxlineSettings` from a YAML file plus the environment, failing in one clear line."""

from pathlib import Path

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, YamlConfigSettingsSource

from voxline.config.settings import VoxlineSettings, mask_url_credentials

DEFAULT_CONFIG_FILE = Path(__file__).with_name("default.yaml")
# A key containing one of these holds a secret: its value never appears in an error or log.
_SECRET_WORDS = ("key", "token", "secret", "password")


class ConfigError(ValueError):
    """Invalid configuration; the message is one line naming the key, the value and the fix."""


def load_settings(config_file: Path | None = None, **overrides) -> VoxlineSettings:
    """Load settings once, at the entry point. `overrides` (e.g. from CLI flags) win over all."""
    if config_file is not None:
        _check_yaml_file(Path(config_file))
    settings_cls = _with_yaml_file(config_file)
    try:
        return settings_cls(**overrides)
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None


def _check_yaml_file(config_file: Path) -> None:
    """Fail in one line on a file that is missing, unreadable, not YAML or not a mapping.

    pydantic-settings would raise a multi-line YAMLError or a bare ValueError for these.
    """
    if not config_file.is_file():
        raise ConfigError(f"config file '{config_file}' not found; pass an existing YAML file")
    try:
        data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"config file '{config_file}' cannot be read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{config_file}' is not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"config file '{config_file}' is not valid YAML{where}: {problem}; "
            "see config/default.yaml for the format"
        ) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"config file '{config_file}' holds a {type(data).__name__}, not a mapping of "
            "sections (server:, llm:, ...); see config/default.yaml"
        )


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
    """First validation error as one line: key, bad value (never a secret's), reason and where
    to set it."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) or "settings"
    value = first.get("input")
    is_section = isinstance(value, dict)  # a whole section failed (e.g. a cross-field check)
    env_name = "VOXLINE_" + "__".join([p.upper() for p in loc] + (["*"] if is_section else []))
    is_secret = any(word in part.lower() for part in loc for word in _SECRET_WORDS)
    if isinstance(value, str):
        value = mask_url_credentials(value)
    shown = "" if is_section or is_secret else f" = {_short(repr(value))}"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        return (
            f"unknown setting {key}{shown}{more}; remove it from the config file or env "
            f"(valid keys: config/default.yaml, docs/config.md)"
        )
    reason = first["msg"].removeprefix("Value error, ")
    return (
        f"invalid setting {key}{shown}: {reason}{more}; "
        f"fix it in the config file or env var {env_name}"
    )


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
