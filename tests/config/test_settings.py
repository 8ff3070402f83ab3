"""Settings: defaults, sources and their order, one-line errors, secrets, and docs completeness."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from voxline.config import ConfigError, VoxlineSettings, load_settings
from voxline.config.loading import DEFAULT_CONFIG_FILE
from voxline.config.settings import mask_url_credentials

REPO = Path(__file__).resolve().parents[2]
DEFAULT_YAML = REPO / "config" / "default.yaml"
CONFIG_DOC = REPO / "docs" / "config.md"
VOXLINE_SCRIPT = Path(sys.executable).parent / "voxline"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No VOXLINE_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("VOXLINE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def write_yaml(tmp_path):
    def write(text: str, name: str = "voxline.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def leaf_keys(model: type[BaseModel] = VoxlineSettings, prefix: str = "") -> list[str]:
    """Every setting as `section.key`, found by walking the schema (nested models recursively)."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += leaf_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def config_error(**kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**kwargs)
    message = str(caught.value)
    assert "\n" not in message, f"config errors are one line: {message!r}"
    return message


# Defaults


def test_defaults_are_valid_and_work_offline():
    settings = load_settings()
    assert settings.llm.provider == "local"
    assert settings.tts.engine == "piper"
    assert settings.server.host == "127.0.0.1"
    assert settings.stt.model_path is None and settings.llm.model_path is None  # packaged models
    assert settings.bus.url is None  # in-process bus, no Redis needed


def test_default_yaml_is_the_packaged_file_and_equals_the_defaults():
    assert DEFAULT_CONFIG_FILE.resolve() == DEFAULT_YAML.resolve()
    from_file = load_settings(DEFAULT_YAML)
    assert from_file.model_dump() == VoxlineSettings().model_dump()
    assert "~" not in str(from_file.models.cache_dir)
    assert from_file.models.cache_dir == Path.home() / ".cache" / "voxline" / "models"


def test_home_is_expanded_in_model_paths(write_yaml):
    settings = load_settings(write_yaml(
        "stt:\n  model_path: ~/whisper-small\n"
        "llm:\n  model_path: ~/m.gguf\n"
        "models:\n  cache_dir: ~/cache\n"
    ))
    assert settings.stt.model_path == Path.home() / "whisper-small"
    assert settings.llm.model_path == Path.home() / "m.gguf"
    assert settings.models.cache_dir == Path.home() / "cache"


# Sources and their order


def test_env_overrides_nested_keys(monkeypatch):
    monkeypatch.setenv("VOXLINE_LLM__N_THREADS", "4")
    monkeypatch.setenv("VOXLINE_SERVER__PORT", "9001")
    monkeypatch.setenv("VOXLINE_AGENT__ENABLE_INTERRUPTIONS", "false")
    settings = load_settings()
    assert settings.llm.n_threads == 4
    assert settings.server.port == 9001
    assert settings.agent.enable_interruptions is False
    assert settings.llm.max_tokens == 160  # the rest of the section keeps its defaults


def test_yaml_file_overrides_defaults(write_yaml):
    settings = load_settings(write_yaml("llm:\n  n_threads: 3\ntts:\n  speed: 1.25\n"))
    assert settings.llm.n_threads == 3
    assert settings.tts.speed == 1.25
    assert settings.llm.n_ctx == 2048


def test_env_beats_yaml_and_arguments_beat_env(write_yaml, monkeypatch):
    config = write_yaml("llm:\n  n_threads: 3\n  max_tokens: 50\n")
    monkeypatch.setenv("VOXLINE_LLM__N_THREADS", "4")
    settings = load_settings(config)
    assert settings.llm.n_threads == 4  # env over file
    assert settings.llm.max_tokens == 50  # file over default
    settings = load_settings(config, llm={"n_threads": 5})
    assert settings.llm.n_threads == 5  # arguments (CLI flags) over env


# Errors


def test_invalid_value_is_one_line_naming_key_value_and_env_var(monkeypatch):
    monkeypatch.setenv("VOXLINE_LLM__N_THREADS", "0")
    message = config_error()
    assert "llm.n_threads" in message
    assert "= '0'" in message
    assert "VOXLINE_LLM__N_THREADS" in message
    assert "greater than or equal to 1" in message


def test_invalid_value_from_yaml_names_the_key(write_yaml):
    message = config_error(config_file=write_yaml("tts:\n  engine: festival\n"))
    assert "tts.engine = 'festival'" in message
    assert "'piper' or 'kokoro'" in message
    assert "VOXLINE_TTS__ENGINE" in message


def test_a_secret_value_never_appears_in_an_error(write_yaml, monkeypatch):
    message = config_error(config_file=write_yaml("llm:\n  api_key: [sk-do-not-show]\n"))
    assert "llm.api_key" in message and "VOXLINE_LLM__API_KEY" in message
    assert "sk-do-not-show" not in message
    # an unknown key that looks secret is named but its value is not shown either
    message = config_error(config_file=write_yaml("access_token: tok-do-not-show\n"))
    assert "access_token" in message and "tok-do-not-show" not in message


def test_unknown_section_is_rejected(write_yaml):
    message = config_error(config_file=write_yaml("sever:\n  port: 1\n"))
    assert message.startswith("unknown setting sever")
    assert "remove it" in message


def test_unknown_key_inside_a_section_is_rejected(write_yaml):
    """A typo inside a section (llm.n_thread) used to be silently dropped."""
    message = config_error(config_file=write_yaml("llm:\n  n_thread: 4\n"))
    assert "llm.n_thread" in message


def test_missing_config_file(tmp_path):
    message = config_error(config_file=tmp_path / "nope.yaml")
    assert "nope.yaml" in message and "not found" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("llm: [1\n", "not valid YAML at line 2"),
        ("llm:\n  n_threads: 2\n n_ctx: 512\n", "not valid YAML at line"),
        ("- server\n- llm\n", "holds a list, not a mapping"),
        ("just text\n", "holds a str, not a mapping"),
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_is_one_clear_error(write_yaml, text, expected):
    assert expected in config_error(config_file=write_yaml(text))


def test_empty_config_file_means_defaults(write_yaml):
    assert load_settings(write_yaml("")).model_dump() == VoxlineSettings().model_dump()


def test_english_only_stt_model_names_the_fix(monkeypatch):
    monkeypatch.setenv("VOXLINE_STT__LANGUAGE", "es")
    message = config_error()
    assert "English-only" in message and "'es'" in message
    assert "stt.language" in message and "stt.model_path" in message  # the two fixes
    assert "VOXLINE_STT__" in message


def test_other_languages_are_accepted_with_a_custom_model(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXLINE_STT__LANGUAGE", "es")
    monkeypatch.setenv("VOXLINE_STT__MODEL_PATH", str(tmp_path))
    assert load_settings().stt.language == "es"


# Secrets


def test_redacted_masks_the_api_key(monkeypatch):
    monkeypatch.setenv("VOXLINE_LLM__API_KEY", "sk-live-123456")
    settings = load_settings()
    assert settings.llm.api_key.get_secret_value() == "sk-live-123456"
    redacted = settings.redacted()
    assert redacted["llm"]["api_key"] == "**********"
    assert "sk-live-123456" not in json.dumps(redacted)
    assert "sk-live-123456" not in repr(settings)


def test_credentials_inside_llm_base_url_are_masked(monkeypatch):
    """A remote LLM behind basic auth (https://user:pass@llm.internal/v1): the worker's config
    goes to every dashboard and Redis, its model label to /ready and the Services view."""
    from voxline.models.loader import _llm_label

    monkeypatch.setenv("VOXLINE_LLM__PROVIDER", "openai")
    monkeypatch.setenv("VOXLINE_LLM__BASE_URL", "https://svc:hunter2@llm.internal/v1")
    settings = load_settings()
    assert settings.redacted()["llm"]["base_url"] == "https://svc:***@llm.internal/v1"
    assert "hunter2" not in json.dumps(settings.redacted())
    assert "hunter2" not in _llm_label(settings) and "llm.internal" in _llm_label(settings)


def test_the_password_in_bus_url_is_masked_in_redacted_settings_and_errors(monkeypatch):
    """Regression: redis://:pass@host was shown as is in the worker.config event (made from
    `redacted()`), in repr() and in the config error of a bad URL."""
    monkeypatch.setenv("VOXLINE_BUS__URL", "redis://:hunter2@10.0.0.5:6379/0")
    monkeypatch.setenv("VOXLINE_BUS__SECRET", "bus-secret-bus-secret-bus-secret")
    settings = load_settings()
    assert settings.bus.url == "redis://:hunter2@10.0.0.5:6379/0"  # the bus still gets it
    assert settings.redacted()["bus"]["url"] == "redis://:***@10.0.0.5:6379/0"
    assert "hunter2" not in json.dumps(settings.redacted())
    assert "hunter2" not in repr(settings)
    assert "bus-secret" not in json.dumps(settings.redacted())
    assert "bus-secret" not in repr(settings)
    monkeypatch.setenv("VOXLINE_BUS__URL", "http://admin:hunter2@10.0.0.5:6379/0")
    message = config_error()
    assert "hunter2" not in message and "http://admin:***@10.0.0.5:6379/0" in message, message


@pytest.mark.parametrize("url, shown", [
    ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
    ("rediss://user:pw@h/1", "rediss://user:***@h/1"),
    ("redis://token@h", "redis://***@h"),
    ("redis://h:6379/0", "redis://h:6379/0"),
    ("unix:///run/redis.sock", "unix:///run/redis.sock"),
])
def test_mask_url_credentials(url, shown):
    assert mask_url_credentials(url) == shown


# Docs completeness


@pytest.mark.parametrize("key", leaf_keys())
def test_every_setting_is_documented(key):
    section, name = key.split(".")
    doc = CONFIG_DOC.read_text(encoding="utf-8")
    assert f"`{key}`" in doc, f"docs/config.md does not document `{key}`"
    env_name = f"VOXLINE_{section.upper()}__{name.upper()}"
    assert env_name in doc, f"docs/config.md does not name {env_name}"
    assert name in (yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))[section] or {}), (
        f"config/default.yaml has no {key}"
    )


def test_leaf_keys_walks_every_section():
    keys = leaf_keys()
    assert "llm.api_key" in keys and "models.cache_dir" in keys and "server.port" in keys
    assert not any(key.count(".") != 1 for key in keys)


# The command line


@pytest.mark.parametrize(
    "text",
    ["llm:\n  n_threads: lots\n", "llm: [1\n", "sever: {}\n"],
    ids=["bad-value", "bad-yaml", "unknown-section"],
)
def test_cli_config_error_is_one_line_without_traceback(write_yaml, text):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXLINE_")}
    done = subprocess.run(
        [str(VOXLINE_SCRIPT), "--config", str(write_yaml(text)), "models"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("voxline: config error:"), lines[0]
    assert done.stdout == ""
