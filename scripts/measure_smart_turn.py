"""How pipecat's packaged smart-turn v3.2 judges finished and unfinished sentences across
espeak-ng voices: its probability of "complete" per clip, its verdict, and its time per call.

Input for the turn-taking work (docs/performance.md): a model that calls synthetic speech
unfinished would make every reply wait. Run: .venv/bin/python scripts/measure_smart_turn.py
"""

import asyncio
import statistics
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import soxr
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

RATE = 16000
FRAME = RATE // 50  # 20 ms, as the transport delivers it
VOICES = ["en-us", "en-gb", "en-us+f3", "en+m3", "en-gb-x-rp+f4", "en-us+klatt2"]
FINISHED = [
    "What is the capital of France?",
    "I just got home from a long day at work.",
    "Set a timer for ten minutes, please.",
    "My daughter starts school tomorrow.",
]
UNFINISHED = [
    "I would like to book a table for",
    "Can you tell me about the",
    "My favourite thing to do on weekends is",
    "I was thinking that maybe we could go to",
]


def speak(text: str, voice: str, folder: Path) -> np.ndarray:
    """espeak-ng's speech of `text` as 16 kHz int16 samples."""
    path = folder / "clip.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(path), text], check=True)
    with wave.open(str(path), "rb") as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768
    return (np.clip(soxr.resample(audio, rate, RATE), -1, 1) * 32767).astype(np.int16)


async def judge(analyzer: LocalSmartTurnAnalyzerV3, samples: np.ndarray,
                silence_secs: float = 0.2) -> tuple[float, bool, float]:
    """Feed a clip as 20 ms frames of speech, then `silence_secs` of silence, and ask."""
    analyzer.clear()
    for i in range(0, len(samples) - FRAME + 1, FRAME):
        analyzer.append_audio(samples[i:i + FRAME].tobytes(), is_speech=True)
    for _ in range(int(silence_secs * 50)):
        analyzer.append_audio(bytes(FRAME * 2), is_speech=False)
    state, metrics = await analyzer.analyze_end_of_turn()
    return metrics.probability, metrics.is_complete, metrics.e2e_processing_time_ms


async def main() -> None:
    analyzer = LocalSmartTurnAnalyzerV3(sample_rate=RATE)
    analyzer.set_sample_rate(RATE)  # what the pipeline's StartFrame does
    rows, times = [], []
    with tempfile.TemporaryDirectory() as folder:
        for voice in VOICES:
            for finished, texts in ((True, FINISHED), (False, UNFINISHED)):
                for text in texts:
                    p, complete, ms = await judge(analyzer, speak(text, voice, Path(folder)))
                    rows.append((voice, finished, text, p, complete))
                    times.append(ms)
    print(f"{'voice':<16}{'finished: P(complete)':<28}{'unfinished: P(complete)':<28}"
          f"{'right':>6}")
    for voice in VOICES:
        mine = [r for r in rows if r[0] == voice]
        done = [r[3] for r in mine if r[1]]
        open_ = [r[3] for r in mine if not r[1]]
        right = sum(1 for r in mine if r[4] == r[1])
        print(f"{voice:<16}{' '.join(f'{p:.2f}' for p in done):<28}"
              f"{' '.join(f'{p:.2f}' for p in open_):<28}{right:>3}/{len(mine)}")
    right = sum(1 for r in rows if r[4] == r[1])
    print(f"all voices: {right}/{len(rows)} right; finished judged complete "
          f"{sum(1 for r in rows if r[1] and r[4])}/{sum(1 for r in rows if r[1])}, "
          f"unfinished judged incomplete {sum(1 for r in rows if not r[1] and not r[4])}/"
          f"{sum(1 for r in rows if not r[1])}; per call p50 {statistics.median(times):.0f} ms, "
          f"max {max(times):.0f} ms")
    await analyzer.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
