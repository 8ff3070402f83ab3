"""The settings schema. Every default works offline on a 2-core CPU with package-shipped models.

Each component receives only its own section (or plain values taken from it); nothing outside
config/ reads the environment.
"""

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from voxline.config.section import Section, expand_home
from voxline.config.voice import (
    AgentSettings,
    AudioSettings,
    LLMSettings,
    STTSettings,
    TTSSettings,
    VADSettings,
)

SUPPORTED_SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
LOOPBACK_HOST_NAMES = ("localhost", "127.0.0.1", "[::1]")
MIN_BUS_SECRET_CHARS = 16


def mask_url_credentials(url: str) -> str:
    """`url` with its password (or a lone user-info token) replaced by `***`, for logs, status
    events and error messages: redis://:pw@host/0 → redis://:***@host/0."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}:***@{host}" if colon else f"{scheme}://***@{host}"


class ServerSettings(Section):
    """HTTP/WebSocket server (`voxline serve`)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_frame_bytes: int = Field(default=65536, ge=320, description="Largest binary audio frame")
    max_text_bytes: int = Field(default=8192, ge=64, description="Largest JSON text message")
    start_timeout_secs: float = Field(default=10.0, gt=0, description="Wait for the start message")
    max_audio_rate: float = Field(
        default=2.0, ge=1.0, le=20.0,
        description="Audio a client may send, in multiples of real time (plus a burst)")
    max_audio_burst_secs: float = Field(
        default=5.0, ge=0.5, le=60.0, description="Audio a client may send ahead at once")
    max_session_secs: float = Field(default=3600.0, gt=0)
    max_sessions: int = Field(default=8, ge=1, description="Concurrent sessions per worker")
    ssl_certfile: Path | None = Field(default=None, description="HTTPS (browsers need it off "
                                      "localhost for the microphone)")
    ssl_keyfile: Path | None = None
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins besides the server's own allowed on /ws, /api/offer and the "
                    "dashboard's WebSocket, e.g. https://app.example.org; '*' allows any",
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: list(LOOPBACK_HOST_NAMES),
        description="Host header names answered (a DNS-rebinding guard), besides the bind "
                    "address: the names clients use, e.g. voice.example.org or *.example.org; "
                    "'*' answers any",
    )
    forwarded_allow_ips: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (IPs or networks) whose X-Forwarded-For/-Proto are "
                    "believed; none by default, so no client can claim another address",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if host != "*" and ("*" in host[1:] or (host.startswith("*") and
                                                    not host.startswith("*."))):
                raise ValueError(f"host {host!r}: a wildcard must be like *.example.org")
            if ":" in host.strip("[]") and not host.startswith("["):
                raise ValueError(f"host {host!r}: write an IPv6 address in brackets, e.g. [::1]")
        return [h.lower() for h in hosts]

    def hosts_answered(self, bind_host: str) -> list[str]:
        """`allowed_hosts` plus the address the server is bound to (unless a wildcard)."""
        if bind_host in ("0.0.0.0", "::", ""):
            return self.allowed_hosts
        name = f"[{bind_host}]" if ":" in bind_host else bind_host.lower()
        return self.allowed_hosts if name in self.allowed_hosts else [*self.allowed_hosts, name]

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        cleaned = []
        for origin in origins:
            origin = origin.strip().lower().rstrip("/")
            scheme, _, rest = origin.partition("://")
            if origin != "*" and (scheme not in ("http", "https") or not rest or "/" in rest):
                raise ValueError(
                    f"origin {origin!r} is not scheme://host[:port] (e.g. https://app.example.org, "
                    "no path) or '*'"
                )
            cleaned.append(origin)
        return cleaned


class AuthSettings(Section):
    """API keys (`voxline keys`) for /ws, /api/offer and the dashboard."""

    enabled: bool = Field(
        default=False, description="Require a key; always on when server.host is not loopback"
    )
    keys_file: Path = Field(
        default=Path("~/.local/share/voxline/keys.json").expanduser(),
        description="Salted hashes of the keys (never the keys), re-read when it changes",
    )

    _expand_keys_file = field_validator("keys_file")(expand_home)


class LimitsSettings(Section):
    """Rate limits on new sessions (WebSocket connections and new WebRTC peers)."""

    sessions_per_minute_per_ip: int = Field(default=60, ge=0, description="0: no limit")
    sessions_per_minute_per_key: int = Field(default=60, ge=0, description="0: no limit")
    auth_failures_per_minute_per_ip: int = Field(
        default=10, ge=0, description="Invalid credentials from one address before it is "
                                      "refused for a while (429); 0: no limit")
    max_sessions_per_ip: int = Field(
        default=0, ge=0, description="Live sessions one client address may hold; 0: no cap")
    max_sessions_per_key: int = Field(
        default=0, ge=0, description="Live sessions one API key may hold; 0: no cap")


class IceServerSettings(Section):
    """One STUN/TURN server, as RTCPeerConnection takes it."""

    urls: list[str] = Field(min_length=1, description="e.g. stun:stun.example.org:3478")
    username: str | None = None
    credential: SecretStr | None = None


class WebRTCSettings(Section):
    """Browser voice over WebRTC (aiortc on the server, no media server)."""

    enabled: bool = True
    ice_servers: list[IceServerSettings] = Field(
        default_factory=list, description="STUN/TURN for use beyond localhost/LAN"
    )
    ice_host_addresses: list[str] | None = Field(
        default=None, description="Only these local IPs as ICE host candidates (e.g. 127.0.0.1)"
    )
    max_sdp_bytes: int = Field(default=30000, ge=1000, description="Largest SDP offer accepted")
    connect_timeout_secs: float = Field(
        default=10.0, ge=1.0, le=120.0,
        description="A peer that has not connected by then is hung up on (its slot freed)")
    max_renegotiations: int = Field(
        default=3, ge=0, le=100, description="Offers a live peer may send after its first")


class PrivacySettings(Section):
    """What is kept of a conversation: by default, nothing after it ends."""

    allow_recording: bool = Field(
        default=False, description="Clients may ask for a recording ('record': true in start)"
    )
    recordings_dir: Path = Field(
        default=Path("~/.local/share/voxline/recordings").expanduser(),
        description="One WAV per recorded session",
    )
    transcript_retention: Literal["none", "memory"] = Field(
        default="none", description="none: the dashboard forgets a transcript when its "
        "session ends; memory: it keeps the last ended sessions' in memory",
    )

    _expand_recordings_dir = field_validator("recordings_dir")(expand_home)


class BusSettings(Section):
    """Event bus. No url: the in-process bus."""

    # Not in repr(): it may hold a password (redacted() masks it).
    url: str | None = Field(default=None, description="redis://host:port/db", repr=False)
    queue_size: int = Field(default=1000, ge=10)
    secret: SecretStr | None = Field(
        default=None, description="Shared by every worker and dashboard on the bus: signs "
                                  "each message (required with url)")
    max_skew_secs: float = Field(
        default=30.0, ge=1.0, le=600.0,
        description="A message older (or newer) than this is refused: clocks must agree")
    tls_ca_file: Path | None = Field(
        default=None, description="CA certificate(s) for a rediss:// server's certificate")

    _expand_ca_file = field_validator("tls_ca_file")(expand_home)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "must be a Redis URL such as redis://127.0.0.1:6379/0 (or unset for the "
                "in-process bus)"
            )
        return url

    @model_validator(mode="after")
    def _secret_with_redis(self):
        if self.url and (self.secret is None or
                         len(self.secret.get_secret_value()) < MIN_BUS_SECRET_CHARS):
            raise ValueError(
                f"bus.secret (at least {MIN_BUS_SECRET_CHARS} characters, the same on every "
                "worker and dashboard) is required with bus.url: it signs every message, so "
                "that whoever else reaches Redis cannot publish commands or events; e.g. "
                "VOXLINE_BUS__SECRET=$(openssl rand -hex 32)")
        return self


class DashboardSettings(Section):
    """The monitoring dashboard (`voxline dashboard`, or mounted in `voxline serve`)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=0, le=65535)
    token: SecretStr | None = Field(
        default=None, description="Required when bound beyond loopback; ?token= or Bearer"
    )
    mount_in_serve: bool = Field(default=True, description="Serve it at /dashboard in serve")
    history_turns: int = Field(default=50, ge=5, le=1000, description="Turns in the chart")
    commands_per_minute: int = Field(
        default=10, ge=0, description="Control commands per operator credential and minute "
                                      "(end a session, set the prompt, reload); 0: no limit")


def _discord_token_from_env() -> SecretStr | None:
    """Discord's own convention, DISCORD_TOKEN, works as well as VOXLINE_DISCORD__TOKEN."""
    token = os.environ.get("DISCORD_TOKEN")
    return SecretStr(token) if token else None


class DiscordSettings(Section):
    """The Discord voice bot (`voxline discord`)."""

    token: SecretStr | None = Field(
        default_factory=_discord_token_from_env,
        description="Bot token from the Developer Portal; or env DISCORD_TOKEN. Never logged",
    )
    guild_ids: list[int] = Field(
        default_factory=list,
        description="Register slash commands in these servers at once (global ones can take "
        "up to an hour to appear)",
    )
    idle_leave_secs: float = Field(
        default=120.0, gt=0, description="Leave a voice channel with no one else in it after this"
    )
    max_speakers: int = Field(
        default=4, ge=1, le=25, description="Members listened to at once in one channel"
    )


class OpenAISettings(Section):
    """The OpenAI-compatible endpoints of `voxline serve` (/v1/realtime,
    /v1/audio/transcriptions, /v1/audio/speech, /v1/models), behind the same API keys and
    limits as /ws."""

    enabled: bool = Field(default=True, description="Serve the /v1 endpoints")
    max_upload_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="The largest file a transcription "
                                                       "takes (413 above it; OpenAI's is 25 MB)")
    max_audio_secs: float = Field(
        default=600.0, gt=0, le=7200, description="The longest audio a transcription takes")


class WyomingSettings(Section):
    """The Wyoming server for Home Assistant's voice pipeline (`voxline wyoming`). Wyoming has
    no authentication: anyone who can reach the port can use it."""

    host: str = Field(default="127.0.0.1", description="Bind address; loopback unless the "
                                                       "network in between is trusted")
    port: int = Field(default=10300, ge=0, le=65535, description="TCP port (0: a free one)")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="Serve /health and /metrics over HTTP on this port (same host); off if unset")
    max_audio_secs: float = Field(
        default=60.0, gt=0, le=600, description="The most audio one transcription takes")
    interim_interval_secs: float = Field(
        default=1.0, gt=0, description="Seconds of new audio between partial transcripts "
                                       "(transcript-chunk) while audio streams in")


class ModelStoreSettings(Section):
    """Where joined model files (split across several packages) are written."""

    cache_dir: Path = Path("~/.cache/voxline/models").expanduser()

    _expand_cache_dir = field_validator("cache_dir")(expand_home)


class VoxlineSettings(BaseSettings):
    """All settings. Sources, strongest first: arguments, VOXLINE_* env, YAML file, defaults."""

    model_config = SettingsConfigDict(
        env_prefix="VOXLINE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitsSettings = LimitsSettings()
    webrtc: WebRTCSettings = WebRTCSettings()
    audio: AudioSettings = AudioSettings()
    vad: VADSettings = VADSettings()
    stt: STTSettings = STTSettings()
    llm: LLMSettings = LLMSettings()
    tts: TTSSettings = TTSSettings()
    agent: AgentSettings = AgentSettings()
    privacy: PrivacySettings = PrivacySettings()
    bus: BusSettings = BusSettings()
    dashboard: DashboardSettings = DashboardSettings()
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    openai: OpenAISettings = OpenAISettings()
    wyoming: WyomingSettings = WyomingSettings()
    models: ModelStoreSettings = ModelStoreSettings()

    def redacted(self) -> dict:
        """The effective settings as plain data, with secrets masked (for logs and dashboards):
        `SecretStr` fields and the passwords in `bus.url` and `llm.base_url`."""
        data = self.model_dump(mode="json")
        if self.bus.url:
            data["bus"]["url"] = mask_url_credentials(self.bus.url)
        data["llm"]["base_url"] = mask_url_credentials(self.llm.base_url)
        return data
