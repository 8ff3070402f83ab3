"""`voxline bench --turn-taking`: scripted conversations over the real `/ws` that measure
how the bot takes turns (turn_scenarios.py), summarised against targets, printed as a table
and written as JSON. Starts its own server unless given a URL."""

import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jiwer
from loguru import logger

from voxline.bench import turn_scenarios
from voxline.bench.runner import normalise_text, spread
from voxline.bench.server_process import free_port, voxline_server
from voxline.bench.turn_audio import Speaker
from voxline.bench.turn_scenarios import FULL, SHORT, Script
from voxline.bench.turn_scoring import rate

SCENARIOS = ("mid_pause", "backchannel", "interruption", "echo", "noise", "noisy_question",
             "conversation")
RUNNERS = {"mid_pause": turn_scenarios.mid_pauses, "backchannel": turn_scenarios.backchannels,
           "interruption": turn_scenarios.interruptions, "echo": turn_scenarios.echo,
           "noise": turn_scenarios.noise, "noisy_question": turn_scenarios.questions,
           "conversation": turn_scenarios.conversation}
TARGETS = {
    "mid_pause": "≥95% answered once, after the end",
    "backchannel": "≥90% keep going",
    "interruption": "p95 onset → silence ≤0.5 s",
    "echo": "−12 dB ≥95% not cut; barge-in over echo p95 ≤0.6 s",
    "noise": "no reply",
    "noisy_question": "answered; WER within 5 points of clean",
    "conversation": "v2v p50 ≤0.7 s, p95 ≤1.1 s",
}


@dataclass(frozen=True)
class TurnTakingOptions:
    """What `voxline bench --turn-taking` runs."""

    short: bool = False  # the small plan, for tests and CI
    url: str | None = None  # a running server; None starts one
    llm_model: str = "qwen2.5-0.5b"
    scenarios: tuple[str, ...] = SCENARIOS
    seed: int = 7
    # Send `"echo_cancellation": true` in the echo scenario's `start` (dropped if the server
    # refuses the field); off: the server's default.
    send_echo_cancellation: bool = False
    server_logs: Path | None = None
    log_level: str = "WARNING"


async def run_turn_taking(options: TurnTakingOptions) -> dict:
    """Every scenario's items and summary, as plain data (what --json writes)."""
    server = None
    if options.url is None:
        log = options.server_logs / "voxline.log" if options.server_logs else None
        if options.server_logs:
            options.server_logs.mkdir(parents=True, exist_ok=True)
        server = voxline_server(free_port(), {"VOXLINE_LLM__MODEL": options.llm_model},
                                log_path=log, log_level=options.log_level)
        logger.info("turn-taking bench: starting the voxline server")
        await server.start()
    try:
        return await run_scenarios(server.ws_url if server else options.url, options)
    finally:
        if server:
            await server.stop()


async def run_scenarios(url: str, options: TurnTakingOptions) -> dict:
    """Run the chosen scenarios one after another against `url` (one call at a time: the
    figures are one user's)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="voxline-turns-") as folder:
        speaker = Speaker(Path(folder), enable_kokoro=not options.short)
        script = Script(url, speaker, SHORT if options.short else FULL,
                        random.Random(options.seed), options.send_echo_cancellation)
        report: dict = {"options": {k: str(v) for k, v in asdict(options).items()},
                        "started": time.time(), "kokoro": speaker.kokoro_note,
                        "voices": [v.name for v in speaker.voices], "scenarios": {}}
        try:
            for name in options.scenarios:
                logger.info("turn-taking bench: {}", name)
                items = await RUNNERS[name](script)
                report["scenarios"][name] = {"summary": SUMMARIES[name](items),
                                             "target": TARGETS[name], "items": items}
        finally:
            speaker.close()
    report["elapsed_secs"] = round(time.monotonic() - started, 1)
    return report


def _v2v(items: list[dict]) -> dict:
    return spread([i["v2v_secs"] for i in items if i.get("v2v_secs") is not None])


def _errors(items: list[dict]) -> list[str]:
    return [f"{i.get('label')}: {i['error']}" for i in items if i.get("error")]


def summarise_mid_pause(items: list[dict]) -> dict:
    """Rate of paused sentences answered once after their end; the extra wait they cost."""
    paused = [i for i in items if i.get("pause_secs") and "error" not in i]
    whole = [i for i in items if i.get("pause_secs") == 0.0 and "error" not in i]
    by_pause = {f"{p:g}": rate([i for i in paused if i["pause_secs"] == p])
                for p in sorted({i["pause_secs"] for i in paused})}
    v2v_paused, v2v_whole = _v2v([i for i in paused if i["ok"]]), _v2v(whole)
    extra = (v2v_paused["p50"] - v2v_whole["p50"]
             if v2v_paused["p50"] is not None and v2v_whole["p50"] is not None else None)
    value = rate(paused)
    return {"rate": value, "n": len(paused), "rate_by_pause": by_pause,
            "early": sum(i["is_early"] for i in paused), "whole_rate": rate(whole),
            "v2v_secs": v2v_paused, "v2v_whole_secs": v2v_whole, "extra_wait_secs": extra,
            "errors": _errors(items), "meets": value is not None and value >= 0.95}


def summarise_backchannel(items: list[dict]) -> dict:
    """Rate of replies that kept going over a backchannel."""
    valid = [i for i in items if i.get("is_valid")]
    value = rate(items)
    return {"rate": value, "n": len(valid), "interrupted": sum(i["interrupted"] for i in valid),
            "extra_answers": sum(i["extra_answers"] for i in valid),
            "pauses": sum(i["pauses"] for i in valid),
            "paused_events": sum(i["paused_events"] for i in valid),
            "longest_silence_secs": spread([i["longest_silence_secs"] for i in valid]),
            "v2v_secs": _v2v(valid), "errors": _errors(items),
            "meets": value is not None and value >= 0.90}


def _stops(items: list[dict], limit_secs: float) -> dict:
    valid = [i for i in items if i.get("is_valid")]
    stops = spread([i["stop_secs"] for i in valid if i["stop_secs"] is not None])
    stopped = sum(i["stop_secs"] is not None for i in valid)
    return {"n": len(valid), "stopped": stopped, "stop_secs": stops,
            "answered_rate": rate(valid, "answered"),
            "v2v_secs": _v2v([i for i in valid if i["answered"]]),
            "meets": bool(valid) and stopped == len(valid) and stops["p95"] <= limit_secs}


def summarise_interruption(items: list[dict]) -> dict:
    """Speech onset → played audio stopped, p50/p95; were the interruptions answered?"""
    return {**_stops(items, 0.5), "errors": _errors(items)}


def summarise_echo(items: list[dict]) -> dict:
    """Replies not cut by their own echo (per level), and barge-in over echo."""
    echo_items = [i for i in items if i.get("kind") == "echo"]
    barge = [i for i in items if i.get("kind") == "barge_in"]
    by_gain = {f"{g:g}": rate([i for i in echo_items if i.get("gain_db") == g])
               for g in sorted({i["gain_db"] for i in echo_items}, reverse=True)}
    at_12 = [i for i in echo_items if i.get("gain_db") == -12.0]
    not_cut_12 = rate(at_12)
    barge_in = _stops(barge, 0.6)
    barge_in["cut_by_echo_first"] = sum(bool(i.get("is_cut_before_onset")) for i in barge)
    return {"rate": not_cut_12, "n": len(at_12), "rate_by_gain_db": by_gain,
            "complete": sum(bool(i.get("is_complete")) for i in echo_items),
            "v2v_secs": _v2v(echo_items), "barge_in": barge_in,
            "echo_cancellation_sent": any(i.get("echo_cancellation_sent") for i in items),
            "errors": _errors(items),
            "meets": not_cut_12 is not None and not_cut_12 >= 0.95 and barge_in["meets"]}


def summarise_noise(items: list[dict]) -> dict:
    """Noise that got no reply, per kind."""
    value = rate(items)
    return {"rate": value, "n": sum(i.get("is_valid", True) for i in items),
            "by_kind": {i["label"]: i.get("ok") for i in items},
            "finals": {i["label"]: i.get("finals", []) for i in items},
            "errors": _errors(items), "meets": value == 1.0}


def summarise_noisy_question(items: list[dict]) -> dict:
    """Questions answered, and WER of the final transcripts, clean and in noise."""
    out: dict = {"errors": _errors(items)}
    for condition in ("clean", "noisy"):
        chosen = [i for i in items if i.get("condition") == condition and "error" not in i]
        out[condition] = {
            "n": len(chosen), "answered_rate": rate(chosen, "answered"),
            "wer": jiwer.wer([normalise_text(i["reference"]) for i in chosen],
                             [normalise_text(i["transcript"]) or "<none>" for i in chosen])
            if chosen else None,
            "v2v_secs": _v2v(chosen)}
    clean, noisy = out["clean"]["wer"], out["noisy"]["wer"]
    out["wer_gap_points"] = 100 * (noisy - clean) if clean is not None and noisy is not None \
        else None
    out["meets"] = out["noisy"]["answered_rate"] == 1.0 and out["wer_gap_points"] is not None \
        and out["wer_gap_points"] <= 5
    return out


def summarise_conversation(items: list[dict]) -> dict:
    """Voice-to-voice over the conversation's complete turns."""
    turns = [i for i in items if "error" not in i]
    v2v = _v2v(turns)
    return {"turns": len(turns), "answered_once_rate": rate(turns), "v2v_secs": v2v,
            "errors": _errors(items),
            "meets": v2v["n"] >= 1 and v2v["p50"] <= 0.7 and v2v["p95"] <= 1.1}


SUMMARIES = {"mid_pause": summarise_mid_pause, "backchannel": summarise_backchannel,
             "interruption": summarise_interruption, "echo": summarise_echo,
             "noise": summarise_noise, "noisy_question": summarise_noisy_question,
             "conversation": summarise_conversation}
