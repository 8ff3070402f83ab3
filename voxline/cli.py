"""The `voxline` command: serve, talk, dashboard, discord, bench, keys, models."""

import argparse
import asyncio
import faulthandler
import importlib.util
import signal
import sys
from pathlib import Path

from loguru import logger

from voxline.config import ConfigError, load_settings
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
    "bench": (
        "Drive real sessions against a server (self-started unless --url), measure voice-to- "
        "voice latency, per-stage times, STT word error rate, CPU and memory; optionally "
        "against a stock pipecat bot on the same models."
    ),
    "discord": (
        "Run the Discord voice bot: load the models, log in with DISCORD_TOKEN, and answer "
        "/join, /leave, /persona and /status; each member who speaks in the bot's voice channel "
        "gets their own conversation."
    ),
    "keys": (
        "Manage the API keys that /ws, /api/offer and the dashboard require when auth is on "
        "(auth.enabled, or any bind beyond loopback). Keys are stored only as salted hashes in "
        "auth.keys_file; a running server sees changes at its next connection."
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
    except _UserFacingError as e:
        print(f"voxline: error: {e}", file=sys.stderr)
        return 1


# Optional parts of the install (pyproject's extras), by the module each needs.
EXTRAS = {"discord": ("discord", "the Discord bot"), "bench": ("jiwer", "the benchmark")}


def _require_extra(extra: str) -> None:
    """A clear message, not an ImportError, when an optional part is not installed."""
    module, what = EXTRAS[extra]
    if importlib.util.find_spec(module) is None:
        raise _UserFacingError(
            f"{what} is not installed: run `bash scripts/setup.sh --with-{extra}` (or pip "
            f"install 'voxline[{extra}]')")


NO_DISCORD_TOKEN = (
    "no Discord bot token: set DISCORD_TOKEN (or discord.token in the config file); see the "
    "README section 'Discord bot'"
)


class _UserFacingError(Exception):
    """An expected failure whose message is the whole story."""


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

    bench = sub.add_parser(
        "bench", help="measure voice-to-voice latency, stages, WER, CPU, RSS",
        description=DESCRIPTIONS["bench"],
    )
    bench.add_argument("--sessions", type=int, default=1, help="concurrent sessions (default 1)")
    bench.add_argument("--turns", type=int, default=5, help="turns per session (default 5)")
    bench.add_argument("--stagger", type=float, default=0.7, metavar="SECS",
                       help="start session i after i×SECS, like independent users (default 0.7)")
    bench.add_argument("--manifest", type=Path, help='JSON lines of {"id","wav","text"}')
    bench.add_argument("--prompts", metavar="ID,ID", default="",
                       help="only these prompts (built-in or the manifest's ids), in this order; "
                            "session i starts at the i-th. E.g. dragon,ocean,book,cook: every "
                            "session asks for a long reply at once")
    bench.add_argument("--url", help="a running server's ws URL (default: start one)")
    bench.add_argument("--baseline", choices=["pipecat"], help="also run stock pipecat")
    bench.add_argument("--soak", type=float, default=0.0, metavar="MINUTES",
                       help="repeat rounds for this long and report RSS/task growth")
    bench.add_argument("--llm", default="qwen2.5-0.5b",
                       choices=["qwen2.5-0.5b", "smollm2-135m", "gemma3-270m"])
    bench.add_argument("--replies", action="store_true",
                       help="score the replies instead (echo, facts, length, formatting, first "
                            "words) on the versioned conversations, without audio")
    bench.add_argument("--all-models", action="store_true",
                       help="--replies: every packaged LLM, not only --llm")
    bench.add_argument("--styles", default="default,legacy", metavar="NAME,NAME",
                       help="--replies: reply styles to compare (default, no-guard, "
                            "no-examples, legacy; default: default,legacy)")
    bench.add_argument("--split", default="all", choices=["all", "tune", "heldout"],
                       help="--replies: which conversations (default all)")
    bench.add_argument("--short", action="store_true",
                       help="--replies: the first two conversations of each split (CI); "
                            "--turn-taking: a few runs of each scenario (about 3 minutes)")
    bench.add_argument("--turn-taking", action="store_true",
                       help="measure turn taking instead: pauses mid-sentence, backchannels, "
                            "interruptions, loudspeaker echo, noise, voice-to-voice (about 15 "
                            "minutes on 2 cores)")
    bench.add_argument("--echo-cancellation-field", action="store_true",
                       help='--turn-taking: send "echo_cancellation": true in the echo '
                            "scenario's start (dropped if the server refuses it)")
    bench.add_argument("--webrtc", action="store_true",
                       help="add one session over WebRTC from headless Chromium (needs chromium "
                            "and the playwright package)")
    bench.add_argument("--json", type=Path, help="write every measurement here")
    bench.add_argument("--plot", type=Path, help="write an HTML latency breakdown here")
    bench.add_argument("--server-logs", type=Path, metavar="DIR",
                       help="write each started server's log to DIR/voxline.log and "
                            "DIR/baseline.log (voxline's at --log-level; default: discarded)")
    bench.set_defaults(run=_bench)

    discord_bot = sub.add_parser(
        "discord", help="run the Discord voice bot (needs DISCORD_TOKEN)",
        description=DESCRIPTIONS["discord"],
    )
    discord_bot.set_defaults(run=_discord)

    _add_keys_parser(sub)

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


def _add_keys_parser(sub) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys",
                          description=DESCRIPTIONS["keys"])
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key and print it (shown only once)")
    create.add_argument("--name", default="", help="a label for the key (who or what uses it)")
    actions.add_parser("list", help="list keys: id, name, created, revoked (never the key)")
    revoke = actions.add_parser("revoke", help="revoke a key; new connections with it are refused")
    revoke.add_argument("key_id", metavar="ID_OR_PREFIX", help="its id, or vxl_live_<id>")
    keys.set_defaults(run=_keys)


def _keys(args: argparse.Namespace) -> int:
    from voxline.auth import KeyFileError, KeyStore

    store = KeyStore(_settings(args).auth.keys_file)
    try:
        if args.action == "create":
            record, key = store.create(args.name)
            print(key)
            print(f"voxline: key {record.prefix} created in {store.path}; it is shown only "
                  "this once. Clients send `Authorization: Bearer <key>` or ?token=<key>.",
                  file=sys.stderr)
        elif args.action == "revoke":
            record = store.revoke(args.key_id)
            print(f"{record.prefix} revoked at {record.revoked_at}")
        else:
            print(f"{'id':<10} {'name':<20} {'created':<26} revoked")
            for record in store.records():
                print(f"{record.id:<10} {record.name[:20]:<20} {record.created_at:<26} "
                      f"{record.revoked_at or '-'}")
    except KeyFileError as e:
        raise _UserFacingError(str(e)) from None
    return 0


def _settings(args: argparse.Namespace, **overrides):
    sections: dict = {}
    for key, value in overrides.items():
        if value is not None:
            section, field = key.split("__")
            sections.setdefault(section, {})[field] = value
    settings = load_settings(args.config)
    if sections:  # CLI flags win over file and env: re-validate with them merged in
        merged = settings.model_dump()
        for section, fields in sections.items():
            merged[section].update(fields)
        settings = load_settings(args.config, **merged)
    return settings


def _serve(args: argparse.Namespace) -> int:
    from voxline.dashboard.auth import DashboardConfigError
    from voxline.models import ModelFileError
    from voxline.server import serve

    settings = _settings(args, server__host=args.host, server__port=args.port,
                         server__ssl_certfile=args.ssl_certfile,
                         server__ssl_keyfile=args.ssl_keyfile)
    try:
        _run_loop(serve(settings))
    except (ModelFileError, DashboardConfigError) as e:
        raise _UserFacingError(str(e)) from None
    except OSError as e:
        raise _UserFacingError(
            f"cannot listen on {settings.server.host}:{settings.server.port}: {e.strerror}; "
            "pick another --port"
        ) from None
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from voxline.dashboard.auth import DashboardConfigError
    from voxline.server import serve_dashboard

    settings = _settings(args, dashboard__host=args.host, dashboard__port=args.port)
    try:
        _run_loop(serve_dashboard(settings))
    except DashboardConfigError as e:
        raise _UserFacingError(str(e)) from None
    except OSError as e:
        raise _UserFacingError(f"cannot start the dashboard: {e}") from None
    return 0


def _discord(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.discord.token is None:  # before the imports below, which load pipecat
        raise _UserFacingError(NO_DISCORD_TOKEN)
    _require_extra("discord")
    from voxline.discord_bot import DiscordBotError, run_discord
    from voxline.models import ModelFileError

    try:
        _run_loop(run_discord(settings))
    except (DiscordBotError, ModelFileError) as e:
        raise _UserFacingError(str(e)) from None
    except OSError as e:
        raise _UserFacingError(f"cannot reach Discord: {e}") from None
    return 0


def _bench_replies(args: argparse.Namespace) -> int:
    from voxline.bench.replies import ReplySetError, run_replies
    from voxline.bench.report import replies_table, write_json
    from voxline.models import catalog
    from voxline.models.registry import ModelFileError

    models = list(catalog.LLM_MODELS) if args.all_models else [args.llm]
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    try:
        report = run_replies(_settings(args), models=models, style_names=styles,
                             split=args.split, short=args.short)
    except (ReplySetError, ModelFileError, OSError) as e:
        raise _UserFacingError(str(e)) from None
    print(replies_table(report))
    if args.json:
        write_json(report, args.json)
    return 0


def _bench_turn_taking(args: argparse.Namespace) -> int:
    from voxline.bench.prompts import PromptError
    from voxline.bench.report import write_json
    from voxline.bench.turn_report import turn_taking_table
    from voxline.bench.turn_taking import TurnTakingOptions, run_turn_taking

    options = TurnTakingOptions(short=args.short, url=args.url, llm_model=args.llm,
                                send_echo_cancellation=args.echo_cancellation_field,
                                server_logs=args.server_logs, log_level=args.log_level)
    try:
        report = asyncio.run(run_turn_taking(options))
    except (PromptError, RuntimeError, OSError) as e:
        raise _UserFacingError(str(e)) from None
    print(turn_taking_table(report))
    if args.json:
        write_json(report, args.json)
    return 0


def _bench(args: argparse.Namespace) -> int:
    _require_extra("bench")
    if args.replies:
        return _bench_replies(args)
    if args.turn_taking:
        return _bench_turn_taking(args)
    from voxline.bench.prompts import PromptError
    from voxline.bench.report import table, write_html, write_json
    from voxline.bench.runner import BenchOptions, run_bench

    prompt_ids = tuple(i.strip() for i in args.prompts.split(",") if i.strip())
    options = BenchOptions(sessions=args.sessions, turns=args.turns, manifest=args.manifest,
                           prompt_ids=prompt_ids,
                           url=args.url, baseline=args.baseline, soak_minutes=args.soak,
                           llm_model=args.llm, webrtc=args.webrtc, stagger_secs=args.stagger,
                           server_logs=args.server_logs, log_level=args.log_level)
    try:
        report = asyncio.run(run_bench(options))
    except (PromptError, RuntimeError, OSError) as e:
        raise _UserFacingError(str(e)) from None
    print(table(report))
    if args.json:
        write_json(report, args.json)
    if args.plot:
        write_html(report, args.plot)
    return 0


def _run_loop(coro) -> None:
    """uvloop when installed (lower latency), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def _talk(args: argparse.Namespace) -> int:
    from voxline.audio_devices import DeviceError, SoundDevice, device_table, parse_device
    from voxline.talk import TalkError, talk, talk_live

    if args.out and not args.wav:
        raise _UserFacingError("--out saves the reply to a --wav question; drop it with --mic")
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
        raise _UserFacingError(str(e)) from None
    return 0


def _models(args: argparse.Namespace) -> int:
    from voxline.models import model_statuses

    statuses = model_statuses(_settings(args))
    print(f"{'model':<24} {'kind':<4} {'size':>10}  {'checksum':<9} source")
    for s in statuses:
        size = f"{s.size / 1e6:.1f} MB" if s.size else "-"
        print(f"{s.name:<24} {s.kind:<4} {size:>10}  {s.checksum:<9} {s.source}")
        if s.detail:
            print(f"{'':<24} {s.detail}")
    logger.debug("{} models listed", len(statuses))
    return 0 if all(s.checksum in ("ok", "unpinned") for s in statuses) else 1
