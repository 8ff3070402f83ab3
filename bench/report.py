"""The benchmark's outputs: a short printed table, JSON, and an HTML latency breakdown."""

import html
import json
from pathlib import Path

from voxline.bench.runner import STAGES

COLOURS = ["#a78bfa", "#60a5fa", "#94a3b8", "#f59e0b", "#34d399", "#f472b6"]


def table(report: dict) -> str:
    """What `voxline bench` prints."""
    lines = [f"{'':<22}{'p50':>8}{'p95':>8}{'max':>8}   (seconds, {report['prompts']} prompts)"]
    for name in ("voxline", "baseline"):
        if name not in report:
            continue
        result = report[name]
        lines.append(f"{name} — {result['answered']}/{result['turns']} turns answered, "
                     f"STT WER {_pct(result['stt_wer'])}, underruns {result['underruns']} "
                     f"({result.get('underrun_secs', 0):.1f}s silent)")
        lines.append(_row("  voice-to-voice", result["v2v_secs"]))
        for stage in (*STAGES, "total_secs"):
            if result["stages"][stage]["n"]:
                lines.append(_row(f"  {stage.removesuffix('_secs')}", result["stages"][stage]))
        resources = result.get("resources") or {}
        if resources:
            per = resources.get("rss_per_extra_session_bytes")
            lines.append(f"  CPU mean {resources['cpu_percent_mean'] or 0:.0f}%  "
                         f"RSS {resources['rss_peak_bytes'] / 2**20:.0f} MB"
                         + (f"  (+{per / 2**20:.1f} MB per extra session)" if per else ""))
        soak = result.get("soak")
        if soak:
            lines.append(f"  soak: {soak['rounds']} rounds, RSS growth "
                         f"{soak['rss_growth_percent']:+.1f}%, tasks {soak['tasks_idle_start']}"
                         f" idle at start → {soak['tasks_end']} at end")
        if "webrtc" in result:
            lines += _webrtc_lines(result["webrtc"])
        if "realtime" in result:
            lines += _realtime_lines(result["realtime"], result)
    if "ratio" in report:
        ratio = report["ratio"]
        lines.append(f"voxline is {_x(ratio['v2v_p50'])} faster at p50, "
                     f"{_x(ratio['v2v_p95'])} at p95 than stock pipecat")
    lines.append(f"whole-clip STT WER (same model): {_pct(report['stt_whole_clip_wer'])}")
    return "\n".join(lines)


def replies_table(report: dict) -> str:
    """What `voxline bench --replies` prints: one row per model and reply style."""
    head = (f"{'model':<14}{'style':<12}{'turns':>6}{'echo':>8}{'facts':>8}{'≤2 sent':>9}"
            f"{'format':>8}{'words':>7}{'guard':>7}{'first p50':>11}{'p95':>7}")
    lines = [f"reply set {report['reply_set']} (v{report['version']}), split {report['split']}"
             + (", short" if report["short"] else ""), head]
    for run in report["runs"]:
        m = run["summary"]
        lines.append(
            f"{run['model']:<14}{run['style']:<12}{m['turns']:>6}{_pct(m['echo_rate']):>8}"
            f"{_pct(m['factual_accuracy']):>8}{_pct(m['within_two_sentences']):>9}"
            f"{_pct(m['formatted_rate']):>8}{m['words_median']:>7g}{m['guard_hits']:>7}"
            f"{_secs(m['first_piece_p50_secs']):>11}{_secs(m['first_piece_p95_secs']):>7}")
    lines.append("echo: replies with a sentence that says the user's words back; facts: right "
                 "answers to questions with a known one; first: seconds to the first words")
    return "\n".join(lines)


def _secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _webrtc_lines(webrtc: dict) -> list[str]:
    """The browser session (--webrtc): its own answered count, WER and latency rows."""
    if webrtc.get("error"):
        return [f"  webrtc (1 browser session) — not run: {webrtc['error']}"]
    lines = [f"  webrtc (1 browser session) — {webrtc['answered']}/{webrtc['turns']} turns "
             f"answered, STT WER {_pct(webrtc['stt_wer'])}, underruns {webrtc['underruns']}",
             _row("    voice-to-voice", webrtc["v2v_secs"])]
    if webrtc["stages"]["total_secs"]["n"]:
        lines.append(_row("    total (server)", webrtc["stages"]["total_secs"]))
    return lines


def _realtime_lines(realtime: dict, ws: dict) -> list[str]:
    """The same sessions over /v1/realtime (--protocol realtime), against /ws's."""
    lines = [f"  realtime (/v1/realtime, same prompts) — {realtime['answered']}/"
             f"{realtime['turns']} turns answered, STT WER {_pct(realtime['stt_wer'])}, "
             f"underruns {realtime['underruns']}",
             _row("    voice-to-voice", realtime["v2v_secs"])]
    if realtime["v2v_secs"]["n"] and ws["v2v_secs"]["n"]:
        gap = realtime["v2v_secs"]["p50"] - ws["v2v_secs"]["p50"]
        lines.append(f"    realtime minus /ws, p50: {gap:+.2f} s")
    return lines


def write_json(report: dict, path: Path) -> None:
    """Everything, for machines."""
    path.write_text(json.dumps(report, indent=2))


def write_html(report: dict, path: Path) -> None:
    """One stacked bar per answered turn (server stages), plus voice-to-voice per turn."""
    sections = []
    for name in ("voxline", "baseline"):
        if name in report:
            sections.append(_chart(name, report[name]))
        if "webrtc" in report.get(name, {}):
            sections.append(_chart(f"{name} over WebRTC (headless Chromium)",
                                   report[name]["webrtc"]))
    legend = "".join(f'<span><i style="background:{c}"></i>{s.removesuffix("_secs")}</span>'
                     for s, c in zip(STAGES, COLOURS, strict=True))
    path.write_text(f"""<!doctype html><meta charset="utf-8"><title>voxline bench</title>
<style>body{{font-family:system-ui;margin:2rem}}i{{display:inline-block;width:.8em;height:.8em;
margin:0 .3em 0 1em}}pre{{background:#f4f6fb;padding:1rem}}</style>
<h1>voxline bench</h1><p>{legend} <span>● voice-to-voice (client)</span></p>
{''.join(sections)}<pre>{html.escape(table(report))}</pre>""")


def _chart(name: str, result: dict) -> str:
    turns = [t for t in result["per_turn"] if t["v2v_secs"] is not None]
    top = max([t["v2v_secs"] for t in turns] + [sum(t["stages"].get(s, 0) for s in STAGES)
                                                for t in turns] + [0.5]) * 1.1
    width, height, bar = max(400, 24 * len(turns)), 220, 18
    parts = []
    for i, turn in enumerate(turns):
        x, y = 10 + i * 24, height - 20
        for stage, colour in zip(STAGES, COLOURS, strict=True):
            h = (height - 30) * turn["stages"].get(stage, 0) / top
            y -= h
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{h:.1f}" '
                         f'fill="{colour}"/>')
        cy = height - 20 - (height - 30) * turn["v2v_secs"] / top
        parts.append(f'<circle cx="{x + bar / 2}" cy="{cy:.1f}" r="4" fill="#111"/>')
    return (f"<h2>{html.escape(name)}</h2><svg width='{width}' height='{height}'>"
            f"{''.join(parts)}</svg>")


def _row(label: str, spread: dict) -> str:
    cells = "".join(f"{spread[q]:>8.2f}" if spread[q] is not None else f"{'–':>8}"
                    for q in ("p50", "p95", "max"))
    return f"{label:<22}{cells}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"
