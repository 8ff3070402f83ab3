"""llama.cpp (llama-cpp-python) chat model, loaded once per process and shared by all sessions."""

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loguru import logger


class LlamaEngine:
    """A shared GGUF model. Generation is serialised (one llama context), in one worker thread.

    llama-cpp-python keeps the KV cache of the previous prompt and reuses its longest common
    prefix, so the system prompt and earlier turns of the same session are not evaluated again.
    """

    def __init__(self, *, model_path: Path, n_ctx: int, n_threads: int):
        from llama_cpp import Llama  # heavy import, only when loading

        self.name = Path(model_path).name
        self.n_ctx = n_ctx
        self._llama = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            verbose=False,
        )
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxline-llm")

    def stream_chat(
        self,
        messages: list[dict],
        *,
        max_tokens: int,
        temperature: float,
        stop: threading.Event,
    ) -> Iterator[str]:
        """Yield reply text pieces. Blocking: iterate it on `self.executor`.

        Checks `stop` between tokens, so an interruption ends generation within one token.
        """
        chunks = self._llama.create_chat_completion(
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            stream=True,
        )
        try:
            for chunk in chunks:
                if stop.is_set():
                    logger.debug("llama: generation stopped by interruption")
                    return
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
        finally:
            chunks.close()

    def warm_up(self, system_prompt: str = "") -> None:
        """Run one tiny completion so the first user turn pays neither for graph allocation
        nor for evaluating the system prompt (its KV cache prefix is kept and reused)."""
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        for _ in self.stream_chat(
            [*messages, {"role": "user", "content": "Hi"}], max_tokens=2, temperature=0.0,
            stop=threading.Event(),
        ):
            pass

    def close(self) -> None:
        """Stop the worker thread (at process exit)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
