"""Runs a benchmark: servers up, concurrent sessions, measurements, summary."""

import asyncio
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jiwer
from loguru import logger

from voxline.bench.baseline import baseline_server
from voxline.bench.client import TurnResult, run_session
from voxline.bench.prompts import Prompt, built_in_prompts, manifest_prompts, pick_prompts
from voxline.bench.realtime_client import run_realtime_session
from voxline.bench.server_process import (
    ResourceSampler,
    ServerProcess,
    free_port,
    voxline_server,
)
from voxline.bench.webrtc_client import WebRTCSessionError, http_origin, run_webrtc_session

STAGES = ("vad_secs", "stt_secs", "turn_secs", "llm_secs", "tts_secs", "transport_secs")


@dataclass(frozen=True)
class BenchOptions:
    """What to run (the CLI flags)."""

    sessions: int = 1
    turns: int = 3
    manifest: Path | None = None
    prompt_ids: tuple[str, ...] = ()  # only these prompts, in this order (default: all)
    url: str | None = None  # an already running server; None starts one
    baseline: str | None = None  # "pipecat"
    soak_minutes: float = 0.0
    llm_model: str = "qwen2.5-0.5b"
    webrtc: bool = False  # one more session, from headless Chromium over WebRTC
    # "realtime": the same sessions again over /v1/realtime (OpenAI's Realtime API), after
    # the /ws ones, on the same server.
    protocol: str = "ws"
    # Session i starts i × stagger seconds after the first: independent users do not end their
    # sentences on the same 20 ms frame (0 = all at once, the worst case).
    stagger_secs: float = 0.7
    # Each server's output goes to a file here (voxline.log, baseline.log), at `log_level`.
    server_logs: Path | None = None
    log_level: str = "WARNING"


async def run_bench(options: BenchOptions) -> dict:
    """Every measurement of one run, as plain data (what --json writes)."""
    with tempfile.TemporaryDirectory(prefix="voxline-bench-") as folder:
        prompts = (manifest_prompts(options.manifest) if options.manifest
                   else built_in_prompts(Path(folder)))
        if options.prompt_ids:
            prompts = pick_prompts(prompts, list(options.prompt_ids))
        report: dict = {"options": {k: str(v) for k, v in asdict(options).items()},
                        "started": time.time(), "prompts": len(prompts)}
        report["voxline"] = await _measure(_voxline(options), options, prompts,
                                           with_webrtc=options.webrtc,
                                           with_realtime=options.protocol == "realtime")
        if options.baseline == "pipecat":
            report["baseline"] = await _measure(
                baseline_server(free_port(), options.llm_model,
                                log_path=_log_path(options, "baseline")), options, prompts)
            report["ratio"] = _ratios(report["voxline"], report["baseline"])
        webrtc_turns = report["voxline"].get("webrtc", {}).get("per_turn", [])
        used = {turn["prompt_id"] for turn in report["voxline"]["per_turn"] + webrtc_turns}
        report["stt_whole_clip_wer"] = whole_clip_wer([p for p in prompts if p.id in used])
    return report


def _voxline(options: BenchOptions) -> ServerProcess | str:
    if options.url:
        return options.url
    return voxline_server(free_port(), {"VOXLINE_LLM__MODEL": options.llm_model,
                                        "VOXLINE_SERVER__MAX_SESSIONS": "64",
                                        # --webrtc: media stays on loopback, like the clients.
                                        "VOXLINE_WEBRTC__ICE_HOST_ADDRESSES": '["127.0.0.1"]'},
                          log_path=_log_path(options, "voxline"), log_level=options.log_level)


def _log_path(options: BenchOptions, name: str) -> Path | None:
    if options.server_logs is None:
        return None
    options.server_logs.mkdir(parents=True, exist_ok=True)
    return options.server_logs / f"{name}.log"


async def _measure(server: ServerProcess | str, options: BenchOptions,
                   prompts: list[Prompt], *, with_webrtc: bool = False,
                   with_realtime: bool = False) -> dict:
    """Run every session against one server and summarise (the WebRTC session, if any, in its
    own block under "webrtc")."""
    own = isinstance(server, ServerProcess)
    if own:
        logger.info("bench: starting {} server", server.name)
        await server.start()
    url = server.ws_url if own else server
    sampler = ResourceSampler(server.process.pid) if own else None
    try:
        if sampler:
            sampler.start()
        rss_idle = sampler.rss_now() if sampler else 0
        rss_one = await _one_session_peak(url, prompts, sampler) if (
            sampler and options.sessions > 1) else None
        soak = SoakProbe(server, sampler) if own and options.soak_minutes else None
        turns, webrtc = await _sessions(url, prompts, options, soak, with_webrtc)
        result = summarise(turns)
        if webrtc is not None:
            result["webrtc"] = webrtc
        if with_realtime:
            result["realtime"] = await _realtime_sessions(url, prompts, options)
        if sampler:
            await sampler.stop()
            result["resources"] = _resources(sampler, rss_idle, options.sessions, rss_one)
            result["resources"]["tasks_after"] = server.ready_info().get("tasks")
        if soak:
            result["soak"] = soak.report()
        return result
    finally:
        if own:
            await server.stop()


async def _one_session_peak(url: str, prompts: list[Prompt], sampler: ResourceSampler) -> int:
    """Peak RSS of one session alone (a turn, not counted): the baseline of the cost per extra
    session. Otherwise the first conversation's one-off growth (allocator pools, buffers sized
    on first use: ~200 MB) would be charged to the extra sessions. Later samples start after."""
    await run_session(url, prompts, session=0, turns=1)
    peak = max((rss for _, _, rss in sampler.samples), default=sampler.rss_now())
    sampler.samples.clear()
    return peak


async def _sessions(url: str, prompts: list[Prompt], options: BenchOptions,
                    soak: "SoakProbe | None",
                    with_webrtc: bool) -> tuple[list[TurnResult], dict | None]:
    """`options.sessions` concurrent clients; with --soak, rounds until the time is up. The
    WebRTC session runs after the first round, on its own, so neither transport's figures
    include the other's load."""
    deadline = time.monotonic() + options.soak_minutes * 60
    results: list[TurnResult] = []
    webrtc: dict | None = None
    if soak:
        await soak.sample()
    while True:
        rounds = await asyncio.gather(*(
            run_session(url, prompts, session=i, turns=options.turns,
                        start_delay_secs=i * options.stagger_secs)
            for i in range(options.sessions)
        ))
        results += [turn for session in rounds for turn in session]
        if with_webrtc and webrtc is None:
            webrtc = await _webrtc_session(url, prompts, options)
        if soak:
            await soak.sample()
        if time.monotonic() >= deadline:
            return results, webrtc


async def _realtime_sessions(url: str, prompts: list[Prompt], options: BenchOptions) -> dict:
    """The same sessions over /v1/realtime, and their p50 against /ws's."""
    rounds = await asyncio.gather(*(
        run_realtime_session(http_origin(url), prompts, session=i, turns=options.turns)
        for i in range(options.sessions)))
    return summarise([turn for session in rounds for turn in session])


async def _webrtc_session(url: str, prompts: list[Prompt], options: BenchOptions) -> dict:
    """The WebRTC session's summary; if it could not run, an empty one with its "error" (the
    WebSocket sessions are reported either way)."""
    try:
        turns = await run_webrtc_session(http_origin(url), prompts, session=options.sessions,
                                         turns=options.turns)
    except WebRTCSessionError as e:
        logger.warning("bench: {}", e)
        return {**summarise([]), "error": str(e)}
    return {**summarise(turns), "error": ""}


class SoakProbe:
    """Between soak rounds, once the server is idle again: its task count and RSS. A leak
    shows as tasks above the first idle count, or RSS climbing round after round."""

    IDLE_WAIT_SECS = 10.0
    # A session counts as ended before its last steps (closing the socket, trimming the
    # heap in a thread) are done: its task is still there for a moment. A leaked task stays.
    SETTLE_SECS = 1.0

    def __init__(self, server: ServerProcess, sampler: ResourceSampler):
        self._server = server
        self._sampler = sampler
        self._started = time.monotonic()
        self.samples: list[dict] = []

    async def sample(self) -> None:
        info: dict = {}
        waited_until = time.monotonic() + self.IDLE_WAIT_SECS
        while time.monotonic() < waited_until:  # sessions end a moment after their clients
            info = await asyncio.to_thread(self._server.ready_info)
            if not info.get("sessions"):
                await asyncio.sleep(self.SETTLE_SECS)
                info = await asyncio.to_thread(self._server.ready_info)
                break
            await asyncio.sleep(0.2)
        self.samples.append({"t": round(time.monotonic() - self._started, 1),
                             "tasks": info.get("tasks"), "sessions": info.get("sessions"),
                             "rss": self._sampler.rss_now()})

    def report(self) -> dict:
        """Growth from the end of the first round (models and caches warm) to the last."""
        idle, warm, last = self.samples[0], self.samples[min(1, len(self.samples) - 1)], \
            self.samples[-1]
        return {
            "rounds": len(self.samples) - 1,
            "tasks_idle_start": idle["tasks"],
            "tasks_end": last["tasks"],
            "tasks_growth": (last["tasks"] - idle["tasks"])
            if last["tasks"] is not None and idle["tasks"] is not None else None,
            "rss_growth_percent": 100 * (last["rss"] - warm["rss"]) / warm["rss"],
            "samples": self.samples,
        }


def summarise(turns: list[TurnResult]) -> dict:
    """p50/p95/max of voice-to-voice and of each stage, WER, errors; plus every turn."""
    answered = [t for t in turns if t.v2v_secs is not None]
    summary = {
        "turns": len(turns),
        "answered": len(answered),
        "v2v_secs": spread([t.v2v_secs for t in answered]),
        "stages": {stage: spread([t.stages[stage] for t in answered if stage in t.stages])
                   for stage in (*STAGES, "total_secs")},
        "stt_wer": streaming_wer(turns),
        "underruns": sum(t.underruns for t in turns),
        "underrun_secs": round(sum(t.underrun_secs for t in turns), 3),
        "errors": [f"session {t.session} turn {t.turn}: {t.error}" for t in turns if t.error],
        "per_turn": [asdict(t) for t in turns],
    }
    return summary


def spread(values: list[float]) -> dict:
    """n, p50, p95, max and mean of `values` (all None when there are none)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None, "mean": None}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def normalise_text(text: str) -> str:
    """Lower case without punctuation: what WER compares."""
    return jiwer.RemovePunctuation()(jiwer.ToLowerCase()(text)).strip()


def streaming_wer(turns: list[TurnResult]) -> float | None:
    """WER of the server's final transcripts against the prompts' reference texts."""
    pairs = [(normalise_text(t.reference), normalise_text(t.transcript)) for t in turns]
    if not pairs:
        return None
    return jiwer.wer([ref for ref, _ in pairs], [hyp or "<none>" for _, hyp in pairs])


def whole_clip_wer(prompts: list[Prompt]) -> float:
    """WER of decoding each whole clip at once with the same model (streaming's reference)."""
    from voxline.config import load_settings
    from voxline.models.catalog import WHISPER_TINY_EN
    from voxline.models.registry import ModelRegistry
    from voxline.models.whisper import WhisperEngine

    settings = load_settings()
    model_dir = ModelRegistry(settings.models.cache_dir).path_of(WHISPER_TINY_EN).parent
    engine = WhisperEngine(model_dir=model_dir, cpu_threads=2, beam_size=1, language="en")
    try:
        hypotheses = [engine.transcribe(p.pcm).text for p in prompts]
    finally:
        engine.close()
    return jiwer.wer([normalise_text(p.text) for p in prompts],
                     [normalise_text(h) or "<none>" for h in hypotheses])


def _resources(sampler: ResourceSampler, rss_idle: int, sessions: int,
               rss_one_session: int | None) -> dict:
    samples = sampler.samples
    cpu = [c for _, c, _ in samples]
    rss = [r for _, _, r in samples]
    peak = max(rss, default=rss_idle)
    return {
        "cpu_percent_mean": statistics.fmean(cpu) if cpu else None,
        "cpu_percent_max": max(cpu, default=None),
        "rss_idle_bytes": rss_idle,
        "rss_peak_bytes": peak,
        "rss_one_session_peak_bytes": rss_one_session,
        "rss_per_extra_session_bytes": (peak - rss_one_session) / (sessions - 1)
        if sessions > 1 and rss_one_session else None,
        "rss_growth_percent": 100 * (rss[-1] - rss[0]) / rss[0] if len(rss) > 1 else None,
        "samples": [{"t": round(t, 1), "cpu": c, "rss": r} for t, c, r in samples],
    }


def _ratios(ours: dict, baseline: dict) -> dict:
    """How many times faster we are (baseline ÷ ours) at p50 and p95 voice-to-voice."""
    ratio = {}
    for q in ("p50", "p95"):
        a, b = ours["v2v_secs"][q], baseline["v2v_secs"][q]
        ratio[f"v2v_{q}"] = b / a if a and b else None
    return ratio
