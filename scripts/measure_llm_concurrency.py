"""Time to first token and tokens/s of 1 vs N concurrent chats: the serial engine of a git ref
(default `main`) against this checkout's batched engine. A measurement, not a test.

    python scripts/measure_llm_concurrency.py [--model qwen2.5-0.5b] [--sessions 1 4]

Each chat runs on the engine's executor, as `pipeline/llm.py` runs it. Pieces are counted as
tokens (one piece per token, except split UTF-8 characters).
"""

import argparse
import inspect
import statistics
import subprocess
import threading
import time
import types
from pathlib import Path

from loguru import logger

from voxline.config import load_settings
from voxline.models import catalog
from voxline.models.registry import ModelRegistry

QUESTIONS = [  # long answers, so that tokens/s is measured over whole max_tokens replies
    "Describe Paris in detail.",
    "Explain in detail how bees make honey.",
    "Explain in detail why the sky is blue.",
    "Describe in detail how a spider builds its web.",
    "Describe in detail the plot of Romeo and Juliet.",
    "Explain in detail how a bicycle works.",
    "Describe in detail the largest ocean on Earth.",
    "Explain in detail how bread is baked.",
]


def old_engine_class(ref: str) -> type:
    """`LlamaEngine` as `models/llama.py` defines it at `ref`."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{ref}:models/llama.py"], cwd=root, check=True, capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("old_llama")
    exec(compile(source, f"{ref}:models/llama.py", "exec"), module.__dict__)
    return module.LlamaEngine


def run_chats(engine, system_prompt: str, histories: list[list[dict]], keys: list[str],
              max_tokens: int) -> dict:
    """One turn of each chat, all started together; appends each reply to its history."""
    n = len(histories)
    results: list[tuple[float, float, int]] = [(0.0, 0.0, 0)] * n  # (ttft, end, tokens)
    has_keys = "session_key" in inspect.signature(engine.stream_chat).parameters
    start = time.perf_counter()

    def chat(i: int) -> None:
        kwargs = {"session_key": keys[i]} if has_keys else {}  # the serial engine has none
        first, pieces = None, []
        for piece in engine.stream_chat(
            [{"role": "system", "content": system_prompt}, *histories[i]],
            max_tokens=max_tokens, temperature=0.0, stop=threading.Event(), **kwargs,
        ):
            first = first or time.perf_counter() - start
            pieces.append(piece)
        histories[i].append({"role": "assistant", "content": "".join(pieces)})
        results[i] = (first, time.perf_counter() - start, len(pieces))

    for future in [engine.executor.submit(chat, i) for i in range(n)]:
        future.result()
    wall = time.perf_counter() - start
    rates = [(r[2] - 1) / (r[1] - r[0]) for r in results if r[2] > 1]
    return {
        "ttft_median": statistics.median(r[0] for r in results),
        "ttft_max": max(r[0] for r in results),
        "tok_s_per_chat": statistics.median(rates) if rates else 0.0,
        "tok_s_total": sum(r[2] for r in results) / wall,
    }


def measure(engine, system_prompt: str, n: int, max_tokens: int, rep: int) -> list[dict]:
    """Two turns of n new chats (new session keys, so slots are taken over)."""
    histories = [[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}] for i in range(n)]
    keys = [f"rep{rep}-chat{i}" for i in range(n)]
    first = run_chats(engine, system_prompt, histories, keys, max_tokens)
    for history in histories:
        history.append({"role": "user", "content": "Thanks. Now tell me more about it."})
    return [first, run_chats(engine, system_prompt, histories, keys, max_tokens)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-0.5b", choices=sorted(catalog.LLM_MODELS))
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved; medians reported")
    parser.add_argument("--old-ref", default="main")
    args = parser.parse_args()

    from voxline.models.llama import LlamaEngine

    settings = load_settings(None)
    llm = settings.llm
    path = ModelRegistry(settings.models.cache_dir).path_of(catalog.LLM_MODELS[args.model])
    engines = {
        f"serial ({args.old_ref})": old_engine_class(args.old_ref)(
            model_path=path, n_ctx=llm.n_ctx, n_threads=llm.n_threads),
        f"batched ({llm.slots} slots)": LlamaEngine(
            model_path=path, n_ctx=llm.n_ctx, n_threads=llm.n_threads, slots=llm.slots),
    }
    for engine in engines.values():
        engine.warm_up(settings.agent.system_prompt)
    # Both engines stay loaded and take turns, so a busy neighbour on the CPU hurts both alike.
    rows: dict[tuple, list[dict]] = {}
    for rep in range(args.repeats):
        for label, engine in engines.items():
            for n in args.sessions:
                for turn, row in enumerate(measure(
                        engine, settings.agent.system_prompt, n, args.max_tokens, rep), 1):
                    rows.setdefault((label, n, turn), []).append(row)
    logger.info("model {}, max_tokens {}, temperature 0, medians of {} runs", path.name,
                args.max_tokens, args.repeats)
    for (label, n, turn), runs in rows.items():
        logger.info("{:20} chats {} turn {}  {}", label, n, turn, "  ".join(
            f"{key} {statistics.median(run[key] for run in runs):.2f}" for key in runs[0]))
    for engine in engines.values():
        engine.close()


if __name__ == "__main__":
    main()
