"""The `voxline` command: serve, talk, dashboard, discord, wyoming, bench, keys, models."""

import argparse
import asyncio
import faulthandler
import signal
import sys
from pathlib import Path

from loguru import logger

from voxline.cli_bench import add_bench_parser
from voxline.cli_keys import add_keys_parser
from voxline.cli_support import (
    UserFacingError,
    require_extra,
    require_opus,
    run_loop,
    settings_from,
)
from voxline.config import ConfigError
from voxline.logs import configure_logging

DESCRIPTIONS = {
    "serve": (
        "Load every model once (a progress line each), then serve the talk page (/), WebRTC "
        "signalling (/api/offer), the WebSocket voice protocol (/ws), /health, /ready and the "
        "dashboard (/dashboard/)."
    ),
    "talk": (
        "Stream a wav file to a running server in real time, like a microphone; print the "
        "transcripts, the bot's words and the turn's latency; save the bot's reply. With --mic, "
        "talk to it through the computer's microphone and speakers instead, turn after turn "
        "until Ctrl-C; the server cancels the speakers' echo, so no headphones are needed."
    ),
    "dashboard": (
        "Serve the monitoring dashboard for every worker that publishes on the Redis bus "
        "(bus.url)."
    ),
    "discord": (
        "Run the Discord voice bot: load the models, log in with DISCORD_TOKEN, and answer "
        "/join, /leave, /persona and /status; each member who speaks in the bot's voice channel "
        "gets their own conversation."
    ),
    "wyoming": (
        "Serve speech to text and text to speech to Home Assistant's voice pipeline over "
        "Wyoming (add the Wyoming Protocol integration with this host and port). Wyoming has no "
        "authentication: it listens on loopback unless told otherwise."
    ),
    "models": (
        "List every packaged model with its source package, size and whether its sha256 "
        "checksum verifies."
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run a subcommand; errors end in one line, never a traceback."""
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: where a stuck engine waits.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        return args.run(args)
    except ConfigError as e:
        print(f"voxline: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except UserFacingError as e:
        print(f"voxline: error: {e}", file=sys.stderr)
        return 1


NO_DISCORD_TOKEN = (
    "no Discord bot token: set DISCORD_TOKEN (or discord.token in the config file); see the "
    "README section 'Discord bot'"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxline", description="Offline real-time voice agent (WebSocket voice server)."
    )
    parser.add_argument("--config", type=Path, help="YAML config file (see config/default.yaml)")
    parser.add_argument("--log-level", default="INFO", help="TRACE, DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="load the models and serve /ws",
        description=DESCRIPTIONS["serve"],
    )
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--ssl-certfile", type=Path, help="TLS certificate (PEM) for HTTPS")
    serve.add_argument("--ssl-keyfile", type=Path, help="TLS private key (PEM) for HTTPS")
    serve.set_defaults(run=_serve)

    _add_talk_parser(sub)

    dashboard = sub.add_parser(
        "dashboard", help="watch every worker on the Redis bus",
        description=DESCRIPTIONS["dashboard"],
    )
    dashboard.add_argument("--host", help="bind address (default 127.0.0.1; others need a token)")
    dashboard.add_argument("--port", type=int, help="port (default 8100)")
    dashboard.set_defaults(run=_dashboard)

    add_bench_parser(sub)

    discord_bot = sub.add_parser(
        "discord", help="run the Discord voice bot (needs DISCORD_TOKEN)",
        description=DESCRIPTIONS["discord"],
    )
    discord_bot.set_defaults(run=_discord)

    wyoming = sub.add_parser(
        "wyoming", help="serve speech to text and speech for Home Assistant (Wyoming)",
        description=DESCRIPTIONS["wyoming"],
    )
    wyoming.add_argument("--host", help="bind address (default 127.0.0.1; Wyoming has no "
                                        "authentication, see docs/operations.md)")
    wyoming.add_argument("--port", type=int, help="TCP port (default 10300)")
    wyoming.add_argument("--metrics-port", type=int,
                         help="also serve /health and /metrics over HTTP on this port")
    wyoming.set_defaults(run=_wyoming)

    add_keys_parser(sub)

    models = sub.add_parser(
        "models", help="list each model, its source, size and checksum",
        description=DESCRIPTIONS["models"],
    )
    models.set_defaults(run=_models)
    return parser


def _add_talk_parser(sub) -> None:
    talk = sub.add_parser(
        "talk", help="speak a wav file (or the microphone) to a running server",
        description=DESCRIPTIONS["talk"],
    )
    source = talk.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", type=Path, help="16-bit mono PCM wav to send")
    source.add_argument("--mic", action="store_true",
                        help="talk through the microphone and speakers, until Ctrl-C")
    source.add_argument("--list-devices", action="store_true",
                        help="list the audio devices (> default input, < default output)")
    talk.add_argument("--out", type=Path, help="--wav: write the bot's reply audio here (wav)")
    talk.add_argument("--url", default="ws://127.0.0.1:8000/ws", help="server WebSocket URL")
    talk.add_argument("--timeout", type=float, default=60.0,
                      help="--wav: give up after this many s")
    talk.add_argument("--input-device", metavar="INDEX_OR_NAME",
                      help="--mic: microphone (default: the system's; see --list-devices)")
    talk.add_argument("--output-device", metavar="INDEX_OR_NAME",
                      help="--mic: speakers (default: the system's; see --list-devices)")
    talk.add_argument("--no-echo-cancellation", dest="enable_echo_cancellation",
                      action="store_false",
                      help="--mic: don't ask the server to cancel the speakers' echo (with "
                           "headphones, or a server without echo cancellation)")
    talk.set_defaults(run=_talk)


def _serve(args: argparse.Namespace) -> int:
    from voxline.dashboard.auth import DashboardConfigError
    from voxline.models import ModelFileError
    from voxline.server import serve

    settings = settings_from(args, server__host=args.host, server__port=args.port,
                         server__ssl_certfile=args.ssl_certfile,
                         server__ssl_keyfile=args.ssl_keyfile)
    try:
        run_loop(serve(settings))
    except (ModelFileError, DashboardConfigError) as e:
        raise UserFacingError(str(e)) from None
    except OSError as e:
        raise UserFacingError(
            f"cannot listen on {settings.server.host}:{settings.server.port}: {e.strerror}; "
            "pick another --port"
        ) from None
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from voxline.dashboard.auth import DashboardConfigError
    from voxline.server import serve_dashboard

    settings = settings_from(args, dashboard__host=args.host, dashboard__port=args.port)
    try:
        run_loop(serve_dashboard(settings))
    except DashboardConfigError as e:
        raise UserFacingError(str(e)) from None
    except OSError as e:
        raise UserFacingError(f"cannot start the dashboard: {e}") from None
    return 0


def _discord(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if settings.discord.token is None:  # before the imports below, which load pipecat
        raise UserFacingError(NO_DISCORD_TOKEN)
    require_extra("discord")
    require_opus()
    from voxline.discord_bot import DiscordBotError, run_discord
    from voxline.models import ModelFileError

    try:
        run_loop(run_discord(settings))
    except (DiscordBotError, ModelFileError) as e:
        raise UserFacingError(str(e)) from None
    except OSError as e:
        raise UserFacingError(f"cannot reach Discord: {e}") from None
    return 0


def _wyoming(args: argparse.Namespace) -> int:
    from voxline.models import ModelFileError
    from voxline.wyoming_server import run_wyoming

    settings = settings_from(args, wyoming__host=args.host, wyoming__port=args.port,
                             wyoming__metrics_port=args.metrics_port)
    try:
        run_loop(run_wyoming(settings))
    except ModelFileError as e:
        raise UserFacingError(str(e)) from None
    except OSError as e:
        raise UserFacingError(
            f"cannot listen on {settings.wyoming.host}:{settings.wyoming.port}: "
            f"{e.strerror or e}; pick another --port") from None
    return 0


def _talk(args: argparse.Namespace) -> int:
    from voxline.audio_devices import DeviceError, SoundDevice, device_table, parse_device
    from voxline.talk import TalkError, talk, talk_live

    if args.out and not args.wav:
        raise UserFacingError("--out saves the reply to a --wav question; drop it with --mic")
    try:
        if args.list_devices:
            print(device_table())
        elif args.mic:
            device = SoundDevice(input_device=parse_device(args.input_device),
                                 output_device=parse_device(args.output_device))
            asyncio.run(talk_live(url=args.url, device=device,
                                  enable_echo_cancellation=args.enable_echo_cancellation))
        else:
            asyncio.run(talk(url=args.url, wav=args.wav, out=args.out,
                             timeout_secs=args.timeout))
    except (TalkError, DeviceError) as e:
        raise UserFacingError(str(e)) from None
    return 0


def _models(args: argparse.Namespace) -> int:
    from voxline.models import model_statuses

    statuses = model_statuses(settings_from(args))
    print(f"{'model':<24} {'kind':<4} {'size':>10}  {'checksum':<9} source")
    for s in statuses:
        size = f"{s.size / 1e6:.1f} MB" if s.size else "-"
        print(f"{s.name:<24} {s.kind:<4} {size:>10}  {s.checksum:<9} {s.source}")
        if s.detail:
            print(f"{'':<24} {s.detail}")
    logger.debug("{} models listed", len(statuses))
    return 0 if all(s.checksum in ("ok", "unpinned") for s in statuses) else 1
