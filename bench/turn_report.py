"""What `voxline bench --turn-taking` prints: one row per scenario, its result in words,
voice-to-voice on the same runs, the target and whether it is met."""

from voxline.bench.turn_taking import TARGETS

LABELS = {"mid_pause": "(a) mid-sentence pause", "backchannel": "(b) backchannel",
          "interruption": "(c) interruption", "echo": "(d) loudspeaker echo",
          "noise": "(e) noise only", "noisy_question": "(f) question in noise",
          "conversation": "(g) conversation"}


def turn_taking_table(report: dict) -> str:
    """The table, then any errors."""
    head = f"{'scenario':<24}{'result':<58}{'v2v p50':>8}{'p95':>6}  {'met':<4}target"
    lines = [f"turn taking{' (short)' if report['options']['short'] == 'True' else ''}: "
             f"{report['elapsed_secs'] / 60:.1f} min; voices {', '.join(report['voices'])}; "
             f"Kokoro {report['kokoro']}", head]
    errors = []
    for name, block in report["scenarios"].items():
        summary = block["summary"]
        v2v = _v2v_of(name, summary)
        lines.append(f"{LABELS[name]:<24}{RESULTS[name](summary):<58}{_secs(v2v['p50']):>8}"
                     f"{_secs(v2v['p95']):>6}  {'yes' if summary['meets'] else 'NO':<4}"
                     f"{TARGETS[name]}")
        errors += [f"  {LABELS[name]}: {e}" for e in summary["errors"]]
    if errors:
        lines += ["errors (items not counted):", *errors]
    return "\n".join(lines)


def _v2v_of(name: str, summary: dict) -> dict:
    if name == "noisy_question":
        return summary["noisy"]["v2v_secs"]
    if name == "noise":
        return {"p50": None, "p95": None}
    return summary["v2v_secs"]


def _mid_pause(s: dict) -> str:
    by_pause = " ".join(f"{p}s:{_pct(r)}" for p, r in s["rate_by_pause"].items())
    return (f"{_pct(s['rate'])} of {s['n']} once after end ({by_pause}); "
            f"wait {_signed(s['extra_wait_secs'])} vs whole")


def _backchannel(s: dict) -> str:
    return (f"{_pct(s['rate'])} of {s['n']} kept going; {s['interrupted']} cut, "
            f"{s['pauses']} pauses, longest gap p95 {_secs(s['longest_silence_secs']['p95'])}s")


def _interruption(s: dict) -> str:
    stops = s["stop_secs"]
    return (f"{s['stopped']}/{s['n']} stopped: p50 {_secs(stops['p50'])}s p95 "
            f"{_secs(stops['p95'])}s; answered {_pct(s['answered_rate'])}")


def _echo(s: dict) -> str:
    by_gain = " ".join(f"{g}dB:{_pct(r)}" for g, r in s["rate_by_gain_db"].items())
    barge = s["barge_in"]
    return (f"not cut {by_gain}; barge-in {barge['stopped']}/{barge['n']} p95 "
            f"{_secs(barge['stop_secs']['p95'])}s")


def _noise(s: dict) -> str:
    kinds = " ".join(f"{k}:{'quiet' if ok else 'REPLIED'}" for k, ok in s["by_kind"].items())
    return f"{_pct(s['rate'])} no reply ({kinds})"


def _noisy_question(s: dict) -> str:
    return (f"answered {_pct(s['noisy']['answered_rate'])} of {s['noisy']['n']}; WER noisy "
            f"{_pct(s['noisy']['wer'])} vs clean {_pct(s['clean']['wer'])}")


def _conversation(s: dict) -> str:
    return f"{s['turns']} turns, {_pct(s['answered_once_rate'])} answered once"


RESULTS = {"mid_pause": _mid_pause, "backchannel": _backchannel, "interruption": _interruption,
           "echo": _echo, "noise": _noise, "noisy_question": _noisy_question,
           "conversation": _conversation}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}s"
