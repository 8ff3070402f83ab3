"""`voxline bench`: latency, replies and turn-taking measurements."""

import argparse
import asyncio
from pathlib import Path

from voxline.cli_support import UserFacingError, require_extra, settings_from

DESCRIPTION = (
    "Drive real sessions against a server (self-started unless --url), measure voice-to- "
    "voice latency, per-stage times, STT word error rate, CPU and memory; optionally "
    "against a stock pipecat bot on the same models."
)


def add_bench_parser(sub) -> None:
    bench = sub.add_parser(
        "bench", help="measure voice-to-voice latency, stages, WER, CPU, RSS",
        description=DESCRIPTION,
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
    bench.add_argument("--discord-turns", action="store_true",
                       help="measure when a Discord member's turn ends instead: the same "
                            "prompts through the bot's member transport, as a microphone "
                            "(silence keeps coming) and as a Discord client (nothing after "
                            "the speech); --turns passes over the prompts (needs the discord "
                            "extra)")
    bench.add_argument("--speech-endpoints", action="store_true",
                       help="measure the OpenAI-compatible audio endpoints and the Wyoming "
                            "server instead: first bytes of /v1/audio/speech, transcription "
                            "time and WER of uploaded files, Wyoming's audio-stop → transcript "
                            "(--short: fewer sentences and prompts)")
    bench.add_argument("--echo-cancellation-field", action="store_true",
                       help='--turn-taking: send "echo_cancellation": true in the echo '
                            "scenario's start (dropped if the server refuses it)")
    bench.add_argument("--protocol", choices=["ws", "realtime"], default="ws",
                       help="realtime: run the same sessions again over /v1/realtime (OpenAI's "
                            "Realtime API) on the same server and compare voice-to-voice")
    bench.add_argument("--webrtc", action="store_true",
                       help="add one session over WebRTC from headless Chromium (needs chromium "
                            "and the playwright package)")
    bench.add_argument("--json", type=Path, help="write every measurement here")
    bench.add_argument("--plot", type=Path, help="write an HTML latency breakdown here")
    bench.add_argument("--server-logs", type=Path, metavar="DIR",
                       help="write each started server's log to DIR/voxline.log and "
                            "DIR/baseline.log (voxline's at --log-level; default: discarded)")
    bench.set_defaults(run=_bench)



def _bench_replies(args: argparse.Namespace) -> int:
    from voxline.bench.replies import ReplySetError, run_replies
    from voxline.bench.report import replies_table, write_json
    from voxline.models import catalog
    from voxline.models.registry import ModelFileError

    models = list(catalog.LLM_MODELS) if args.all_models else [args.llm]
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    try:
        report = run_replies(settings_from(args), models=models, style_names=styles,
                             split=args.split, short=args.short)
    except (ReplySetError, ModelFileError, OSError) as e:
        raise UserFacingError(str(e)) from None
    print(replies_table(report))
    if args.json:
        write_json(report, args.json)
    return 0


def _bench_turn_taking(args: argparse.Namespace) -> int:
    from voxline.bench.prompts import PromptError
    from voxline.bench.turn_report import turn_taking_table
    from voxline.bench.turn_taking import TurnTakingOptions, run_turn_taking

    options = TurnTakingOptions(short=args.short, url=args.url, llm_model=args.llm,
                                send_echo_cancellation=args.echo_cancellation_field,
                                server_logs=args.server_logs, log_level=args.log_level)
    return _run_and_report(args, run_turn_taking(options), turn_taking_table,
                           (PromptError, RuntimeError, OSError))


def _bench_discord_turns(args: argparse.Namespace) -> int:
    require_extra("discord")
    from voxline.bench.discord_turns import (
        DiscordTurnsOptions,
        discord_turns_table,
        run_discord_turns,
    )
    from voxline.bench.prompts import PromptError
    from voxline.models.registry import ModelFileError

    options = DiscordTurnsOptions(turns=args.turns, manifest=args.manifest)
    return _run_and_report(
        args, run_discord_turns(settings_from(args, llm__model=args.llm), options),
        discord_turns_table, (PromptError, ModelFileError, RuntimeError, OSError))


def _bench_speech_endpoints(args: argparse.Namespace) -> int:
    from voxline.bench.prompts import PromptError
    from voxline.bench.speech_endpoints import (
        SpeechEndpointsOptions,
        run_speech_endpoints,
        speech_endpoints_table,
    )

    options = SpeechEndpointsOptions(short=args.short, llm_model=args.llm,
                                     server_logs=args.server_logs)
    return _run_and_report(args, run_speech_endpoints(options), speech_endpoints_table,
                           (PromptError, RuntimeError, OSError))


def _run_and_report(args: argparse.Namespace, measuring, table, errors: tuple) -> int:
    """Run a bench mode's coroutine, print its table, write its JSON (--json); its `errors`
    end in one line."""
    from voxline.bench.report import write_json

    try:
        report = asyncio.run(measuring)
    except errors as e:
        raise UserFacingError(str(e)) from None
    print(table(report))
    if args.json:
        write_json(report, args.json)
    return 0


def _bench(args: argparse.Namespace) -> int:
    require_extra("bench")
    if args.speech_endpoints:
        return _bench_speech_endpoints(args)
    if args.replies:
        return _bench_replies(args)
    if args.turn_taking:
        return _bench_turn_taking(args)
    if args.discord_turns:
        return _bench_discord_turns(args)
    from voxline.bench.prompts import PromptError
    from voxline.bench.report import table, write_html, write_json
    from voxline.bench.runner import BenchOptions, run_bench

    prompt_ids = tuple(i.strip() for i in args.prompts.split(",") if i.strip())
    options = BenchOptions(sessions=args.sessions, turns=args.turns, manifest=args.manifest,
                           prompt_ids=prompt_ids,
                           url=args.url, baseline=args.baseline, soak_minutes=args.soak,
                           llm_model=args.llm, webrtc=args.webrtc, stagger_secs=args.stagger,
                           protocol=args.protocol,
                           server_logs=args.server_logs, log_level=args.log_level)
    try:
        report = asyncio.run(run_bench(options))
    except (PromptError, RuntimeError, OSError) as e:
        raise UserFacingError(str(e)) from None
    print(table(report))
    if args.json:
        write_json(report, args.json)
    if args.plot:
        write_html(report, args.plot)
    return 0
