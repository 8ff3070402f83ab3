"""pipecat's OpenAI LLM service behind a shared circuit breaker, with a spoken apology."""

import asyncio

import httpx2
import openai
from loguru import logger
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService

from voxline.models.prompt import Examples, last_user_words, nudged, with_examples
from voxline.pipeline.circuit_breaker import CircuitBreaker
from voxline.pipeline.echo import EchoGuard, Verdict
from voxline.pipeline.frames import EchoGuardedFrame


class RemoteLLMError(Exception):
    """A turn the remote LLM did not answer. `code` is the client's error code and the
    `voxline_errors_total{kind}` label; the message is safe to show a client (no URL)."""

    def __init__(self, code: str, message: str, status_code: int | None = None):
        super().__init__(message)
        self.code = code
        # Read by pipecat's error classification: a 401 stays permanent, a 500 transient.
        self.status_code = status_code


class RemoteLLMService(OpenAILLMService):
    """`OpenAILLMService` whose failed turns are spoken, not silent.

    A turn fails when the server errors, cannot be reached, or sends no token within
    `first_token_timeout_secs`. Then the service speaks `apology` (as LLM text, so TTS, the
    client's `bot.text` and the history get it), reports the failure to the shared `breaker`
    and pushes the error (pipecat's `push_error`, category SERVER or CONNECTIVITY, so the
    processor stays usable). While the breaker is open a turn fails at once with no request.

    pipecat's own `retry_on_timeout` is not used: it re-issues a slow request with no timeout
    at all, which is the silence this class exists to end.
    """

    def __init__(
        self, *, breaker: CircuitBreaker, first_token_timeout_secs: float, apology: str,
        examples: Examples = (), echo_guard: bool = False, echo_fallback: str = "I see.",
        **kwargs,
    ):
        # Set before super().__init__, which calls create_client.
        self._first_token_timeout_secs = first_token_timeout_secs
        super().__init__(**kwargs)
        self._breaker = breaker
        self._apology = apology
        self._examples = examples
        self._first_token_deadline: asyncio.Timeout | None = None
        self._is_echo_guarded = echo_guard
        self._echo_fallback = echo_fallback
        self._guard: EchoGuard | None = None  # the current try's, while it holds text back
        self._is_nudged = False  # the current try is the second: the user's words are nudged

    def create_client(self, **kwargs):
        """pipecat's client without the SDK's own retries (two, with backoff: seconds of
        silence per turn; the breaker decides about retrying). The timeout bounds connecting
        and every read, so a stream that stalls mid-reply fails too."""
        client = super().create_client(**kwargs)
        self._openai_client = client.with_options(max_retries=0,
                                                  timeout=self._first_token_timeout_secs)
        return self._openai_client

    async def cleanup(self):
        """Close the client's HTTP connections with the session: pipecat leaves them open
        until the garbage collector finds them."""
        await super().cleanup()
        await self._openai_client.close()

    def build_chat_completion_params(self, params_from_context) -> dict:
        """pipecat's request, with the persona's example exchanges after the system prompt
        and, on a second try after an echo, the nudge after the user's words."""
        params = super().build_chat_completion_params(params_from_context)
        messages = with_examples([dict(m) for m in params["messages"]], self._examples)
        params["messages"] = nudged(messages) if self._is_nudged else messages
        return params

    async def _process_context(self, context: LLMContext):
        """Answer a turn; an opening that says the user's words back is not spoken but
        written again once with a nudge, then replaced by the fallback (as the local LLM
        does, `pipeline/reply_writer.py`)."""
        user_text = last_user_words(context.get_messages()) if self._is_echo_guarded else ""
        try:
            for attempt in (1, 2):
                self._guard = EchoGuard(user_text) if user_text else None
                self._is_nudged = attempt == 2
                try:
                    await self._answer(context)
                    guard = self._guard
                    if guard is None or guard.verdict is Verdict.PASS:
                        return  # what it held was spoken when it passed
                    if guard.finish() is Verdict.PASS:  # a short reply, held to its end
                        await super()._push_llm_text(guard.held)
                        return
                except _EchoHeard:
                    pass
                await self.push_frame(EchoGuardedFrame(text=self._guard.held, attempt=attempt))
            await super()._push_llm_text(self._echo_fallback)
        finally:
            self._guard, self._is_nudged = None, False

    async def _answer(self, context: LLMContext):
        """One request through the breaker; on failure, the apology, then the error is raised
        for pipecat's `process_frame` to push."""
        if not self._breaker.allow_request():
            await self._push_llm_text(self._apology)
            raise RemoteLLMError(
                "llm_circuit_open",
                f"the language model is unavailable ({self._breaker.describe()})",
            )
        try:
            async with asyncio.timeout(self._first_token_timeout_secs) as deadline:
                self._first_token_deadline = deadline
                await super()._process_context(context)
        except (TimeoutError, openai.APITimeoutError, httpx2.TimeoutException) as e:
            error, cause = RemoteLLMError(
                "llm_timeout", f"the language model did not answer within "
                f"{self._first_token_timeout_secs:g} s"), e
        except openai.APIStatusError as e:
            error, cause = RemoteLLMError(
                "llm_unavailable", f"the language model failed (HTTP {e.status_code})",
                status_code=e.status_code), e
        except (openai.APIError, httpx2.TransportError) as e:
            error, cause = RemoteLLMError(
                "llm_unavailable",
                f"the language model cannot be reached ({type(e).__name__})"), e
        except _EchoHeard:
            self._breaker.record_success()  # the server answered; the words were wrong
            raise
        except BaseException:
            self._breaker.release()  # cancelled by an interruption: it proves nothing
            raise
        else:
            self._breaker.record_success()
            return
        finally:
            self._first_token_deadline = None
        self._breaker.record_failure(str(error))
        logger.warning("{}: {} at {}; circuit {}", self, error,
                       self._client.base_url.copy_with(username=None, password=None),
                       self._breaker.state)
        await self._push_llm_text(self._apology)
        raise error from cause

    async def _push_llm_text(self, text: str):
        """The first token ends the first-token deadline; later pauses are the client's
        read timeout's business."""
        if self._first_token_deadline is not None:
            self._first_token_deadline.reschedule(None)
            self._first_token_deadline = None
        guard = self._guard
        if guard is None or guard.verdict is Verdict.PASS:
            await super()._push_llm_text(text)
        elif (verdict := guard.feed(text)) is Verdict.PASS:
            await super()._push_llm_text(guard.held)
        elif verdict is Verdict.ECHO:
            raise _EchoHeard  # ends the stream: pipecat closes the request


class _EchoHeard(Exception):
    """The opening said the user's words back: this try's stream ends here."""
