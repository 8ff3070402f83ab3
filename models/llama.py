"""llama.cpp (llama-cpp-python) chat model, loaded once per process and shared by all sessions."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from voxline.models.compute import ComputeArbiter
    from voxline.models.llama_request import ChatStream, Pace, Penalties


class LlamaEngine:
    """A shared GGUF model answering up to `slots` chats at once, batched in one llama context.

    A scheduler thread (`models/llama_batch.py`) decodes one batch per step for all running
    replies, so a fourth session's first token no longer waits for three whole replies. Each slot
    has `n_ctx` tokens of KV cache and stays with its session between turns: only the part of a
    new prompt after the common prefix (the system prompt, earlier turns) is evaluated.
    """

    def __init__(self, *, model_path: Path, n_ctx: int, n_threads: int, slots: int = 4,
                 prefill_chunk_tokens: int = 64, compute: "ComputeArbiter | None" = None,
                 chat_template: str | None = None):
        import llama_cpp  # heavy imports, only when loading
        from llama_cpp import _internals as internals
        from llama_cpp._logger import set_verbose
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from voxline.models.llama_batch import BatchScheduler

        self.name = Path(model_path).name
        self.n_ctx = n_ctx
        self.slots = slots
        set_verbose(False)
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        self._model = internals.LlamaModel(
            path_model=str(model_path), params=model_params, verbose=False
        )
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * slots  # split evenly: each sequence gets its own n_ctx of KV
        params.n_seq_max = slots
        params.kv_unified = False
        # A step holds one token per generating slot plus up to `prefill_chunk_tokens` prompt
        # tokens. 64 cost about 0.5 s here (Qwen 0.5B, 2 cores): the longest that a new prompt
        # pauses the other replies.
        params.n_batch = params.n_ubatch = prefill_chunk_tokens + slots
        params.n_threads = params.n_threads_batch = n_threads
        # Off, as in llama-cpp-python's Llama: on 2 AVX2 cores flash attention ("auto") made a
        # step with 100 prompt tokens about twice as slow (2.4 s against 1.3 s, Qwen 0.5B).
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = internals.LlamaContext(model=self._model, params=params, verbose=False)
        # `chat_template`: the family's format, for a GGUF that has none (a base model).
        template = self._model.metadata().get("tokenizer.chat_template") or chat_template
        if not template:
            raise ValueError(
                f"LLM model '{self.name}' has no chat template in its GGUF metadata; use a chat "
                "(instruct) GGUF such as the packaged 'qwen2.5-0.5b' or 'smollm2-135m'"
            )
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._model.token_get_text(self._model.token_eos()),
            bos_token=self._model.token_get_text(self._model.token_bos()),
        )
        self._scheduler = BatchScheduler(
            model=self._model, ctx=self._ctx, slots=slots, n_ctx_per_slot=n_ctx,
            prefill_chunk_tokens=prefill_chunk_tokens, compute=compute,
        )
        # Twice the slots: a reply that is ending after an interruption and its session's next
        # reply overlap for a step, and extra callers wait in the scheduler, which knows slots.
        self.executor = ThreadPoolExecutor(max_workers=2 * slots, thread_name_prefix="voxline-llm")

    def tokenize_chat(self, messages: list[dict]) -> list[int]:
        """The prompt tokens of `messages` in the model's own chat template (from the GGUF)."""
        rendered = self._formatter(messages=messages)
        return self._model.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )

    def tokenize_text(self, text: str) -> list[int]:
        """`text`'s tokens, as it reads inside a message (no BOS, no special tokens)."""
        return self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def stream_chat(
        self,
        messages: list[dict],
        *,
        max_tokens: int,
        temperature: float,
        stop: threading.Event,
        session_key: str | None = None,
        pace: "Pace | None" = None,
        penalties: "Penalties | None" = None,
    ) -> "ChatStream":
        """Iterate the reply's text pieces. Blocking: iterate it on `self.executor`.

        `stop` ends generation within one scheduler step (about one token). Replies with the same
        `session_key` reuse one slot's KV cache; `None` means a one-off chat. Raises ValueError
        when the prompt does not fit in `n_ctx`, and the scheduler's errors while iterating.
        `pace` (asked from the scheduler thread) holds the reply back while its text is far
        enough ahead of playback and hurries it when playback runs short (`Request.pace`).
        `penalties` make tokens already said less likely (`Penalties`).
        """
        from voxline.models.llama_request import Request

        prompt = self.tokenize_chat(messages)
        if len(prompt) >= self.n_ctx:
            raise ValueError(
                f"LLM prompt of {len(prompt)} tokens does not fit llm.n_ctx={self.n_ctx}; "
                "raise VOXLINE_LLM__N_CTX or keep less history"
            )
        return self._scheduler.submit(Request(
            prompt=prompt, max_tokens=max_tokens, temperature=temperature, stop=stop,
            session_key=session_key, pace=pace, penalties=penalties,
        ))

    def prefill(self, messages: list[dict], *, session_key: str) -> "ChatStream | None":
        """Start evaluating `messages`, which end with the user's words so far (an interim
        transcript), into the session's KV cache; returns at once. When the user finishes, the
        reply's prompt shares that prefix and evaluates only the rest: on 2 cores a prompt
        token costs ~14 ms, and a question ~20. Skipped if the session has no slot to spare;
        superseded by the session's next request. Reading the returned stream (it yields no
        text) waits until the prefill has run, been skipped or been superseded; None: nothing
        to evaluate."""
        from voxline.models.llama_request import Request

        rendered = self._formatter(messages=messages)
        words = messages[-1]["content"]
        # Up to the user's last word: the end-of-turn and assistant tokens come later.
        text = rendered.prompt[: rendered.prompt.rfind(words) + len(words)]
        prompt = self._model.tokenize(text.encode("utf-8"), add_bos=not rendered.added_special,
                                      special=True)
        if not 1 < len(prompt) < self.n_ctx:
            return None
        return self._scheduler.submit(Request(prompt=prompt, max_tokens=0, temperature=0.0,
                                              stop=threading.Event(), session_key=session_key))

    def warm_up(self, prefix: list[dict] | None = None) -> None:
        """Allocate the compute graph and evaluate `prefix` (what every prompt starts with: the
        system prompt and example exchanges) into every slot, so that no session's first turn
        pays for either."""
        messages = [*(prefix or []), {"role": "user", "content": "Hi"}]
        streams = [
            self.stream_chat(messages, max_tokens=1, temperature=0.0, stop=threading.Event())
            for _ in range(self.slots)
        ]
        for stream in streams:
            for _ in stream:
                pass
        logger.debug("{}: warmed up {} slots", self.name, self.slots)

    def close(self) -> None:
        """Stop the scheduler and the caller threads (at process exit)."""
        self._scheduler.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
